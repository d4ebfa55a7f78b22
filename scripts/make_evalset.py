#!/usr/bin/env python3
"""Generate the dev eval sets (seeded, reproducible): bench/evalsets/{train,heldout}.jsonl.

Tasks with automatically checkable answers: arithmetic of graded difficulty, word problems, unit and date
arithmetic, facts from data given in the prompt, letter counting, short classification and yes/no questions.
The train items teach the router; the held-out items (disjoint prompts, generated from a different seed
stream) are the only ones numbers are reported on.

    .venv/bin/python scripts/make_evalset.py [--seed 7] [--train 1400] [--heldout 600] [--out bench/evalsets]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Callable
from pathlib import Path

from edged.evaluation.items import EvalItem

Item = tuple[str, str, str, tuple[str, ...]]  # prompt, answer, grader, choices
NUM = " Answer with just the number."
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
NAMES = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lev", "Mia", "Noor")
WORDS = (
    "apple", "banana", "strawberry", "elephant", "mississippi", "letter", "committee", "balloon",
    "bookkeeper", "parallel", "necessary", "assessment", "giraffe", "pepper", "coffee", "success", "referee",
    "tomorrow",
    "banana", "umbrella", "cabbage", "address", "raccoon", "possession", "occurrence", "kangaroo", "window",
    "library", "pineapple", "grasshopper", "butterfly", "chocolate", "engineer", "sunflower", "calendar",
)  # fmt: skip
UNITS = (  # (big unit, small unit, factor)
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000), ("years", "months", 12), ("dozens", "items", 12), ("feet", "inches", 12),
)  # fmt: skip
POSITIVE = ("loved", "wonderful", "excellent", "delightful", "great", "fantastic", "friendly", "perfect")
NEGATIVE = ("hated", "terrible", "awful", "rude", "broken", "disappointing", "cold", "boring")
REVIEW = (
    "The {n} was {w} and I would {v} come back.",
    "A {w} {n}, I {v} recommend it.",
    "The {n}? {w}. We {v} return.",
)
SUBJECTS = ("service", "food", "hotel room", "film", "concert", "staff", "book", "game", "trip", "museum")
TOPICS = {
    "sports": ("The striker scored twice in the final match.", "The team won the championship on Sunday.",
               "She ran the marathon in under three hours.", "The referee showed a red card."),
    "food": ("Add the garlic and simmer the sauce for ten minutes.", "The bakery sells fresh bread daily.",
             "This soup needs more salt and pepper.", "We ordered pasta and a salad."),
    "weather": ("Heavy rain is expected tomorrow afternoon.", "The temperature will drop below freezing.",
                "A strong wind blew from the north all night.", "Sunny skies are forecast for the weekend."),
    "technology": ("The new phone has a faster processor.", "Update the software to fix the security bug.",
                   "The laptop battery lasts ten hours.", "The server crashed after the upgrade."),
}  # fmt: skip
ANIMALS = {
    "dog": "mammal", "whale": "mammal", "bat": "mammal", "horse": "mammal", "dolphin": "mammal",
    "eagle": "bird", "penguin": "bird", "owl": "bird", "sparrow": "bird", "ostrich": "bird",
    "salmon": "fish", "shark": "fish", "trout": "fish", "tuna": "fish", "cod": "fish",
    "snake": "reptile", "lizard": "reptile", "turtle": "reptile", "crocodile": "reptile", "iguana": "reptile",
}  # fmt: skip
SYLLABLES = ("ka", "lo", "mi", "ter", "zan", "qu", "vel", "dra", "po", "sin", "ru", "ost", "bel", "nor")


def _num(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def arithmetic(rng: random.Random) -> Item:
    op = rng.choice("+-*/")
    da, db = rng.randint(1, 4), rng.randint(1, 3 if op in "*/" else 4)
    a, b = _num(rng, da), _num(rng, db)
    if op == "/":
        b = max(b, 2)
        a = b * _num(rng, max(1, da - 1))
    if op == "-" and rng.random() < 0.7:
        a, b = max(a, b), min(a, b)
    result = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
    symbol = {
        "+": "+",
        "-": "-",
        "*": rng.choice(("*", "×", "times")),
        "/": rng.choice(("/", "÷", "divided by")),
    }
    return f"What is {a} {symbol[op]} {b}?{NUM}", str(result), "number", ()


def word_problem(rng: random.Random) -> Item:
    name, thing = rng.choice(NAMES), rng.choice(("apples", "books", "coins", "stamps", "marbles"))
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?{NUM}",
            str(a + b),
            "number",
            (),
        )
    if kind == 1:
        a = a + b
        return (
            f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?{NUM}",
            str(a - b),
            "number",
            (),
        )
    n = rng.randint(2, 9)
    return (
        f"{name} buys {n} boxes with {b} {thing} in each box. How many {thing} is that in total?{NUM}",
        str(n * b),
        "number",
        (),
    )


def units(rng: random.Random) -> Item:
    big, small, factor = rng.choice(UNITS)
    n = rng.randint(1, 12) if rng.random() < 0.6 else rng.randint(13, 250)
    if rng.random() < 0.7:
        return f"How many {small} are in {n} {big}?{NUM}", str(n * factor), "number", ()
    return f"Convert {n * factor} {small} to {big}.{NUM}", str(n), "number", ()


def dates(rng: random.Random) -> Item:
    kind = rng.randrange(3)
    if kind == 0:
        start, n = rng.randrange(7), rng.randint(1, 20)
        prompt = (
            f"Today is {WEEKDAYS[start]}. What day of the week will it be in {n} days? Answer with the day."
        )
        return prompt, WEEKDAYS[(start + n) % 7], "choice", WEEKDAYS
    if kind == 1:
        start, n = rng.randrange(12), rng.randint(1, 14)
        prompt = f"Which month comes {n} months after {MONTHS[start]}? Answer with the month."
        return prompt, MONTHS[(start + n) % 12], "choice", MONTHS
    day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(365))
    n = rng.randint(1, 30)
    later = day + dt.timedelta(days=n)
    prompt = (
        f"What is the date {n} days after {MONTHS[day.month - 1]} {day.day}? Answer with the month and day."
    )
    return prompt, rf"(?i)\b{MONTHS[later.month - 1]}\s+{later.day}(?!\d)", "regex", ()


def _place(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def facts(rng: random.Random) -> Item:
    k = rng.randint(2, 5)
    names = rng.sample(NAMES, k)
    kind = rng.randrange(3)
    if kind == 0:
        ages = rng.sample(range(18, 80), k)
        table = ", ".join(f"{n} is {a}" for n, a in zip(names, ages, strict=True))
        i = rng.randrange(k)
        return f"{table}. How old is {names[i]}?{NUM}", str(ages[i]), "number", ()
    if kind == 1:
        ages = rng.sample(range(18, 80), k)
        table = ", ".join(f"{n} is {a} years old" for n, a in zip(names, ages, strict=True))
        young = rng.random() < 0.5
        pick = names[ages.index(min(ages) if young else max(ages))]
        prompt = f"{table}. Who is the {'youngest' if young else 'oldest'}? Answer with the name."
        return prompt, pick, "choice", tuple(names)
    countries = [_place(rng) for _ in range(k)]
    capitals = [_place(rng) for _ in range(k)]
    table = " ".join(f"The capital of {c} is {cap}." for c, cap in zip(countries, capitals, strict=True))
    i = rng.randrange(k)
    return f"{table} What is the capital of {countries[i]}?", capitals[i], "contains", ()


def letters(rng: random.Random) -> Item:
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word))) if rng.random() < 0.85 else rng.choice("xzqjvw")
    kind = rng.randrange(3)
    if kind == 0:
        prompt = f"How many times does the letter '{letter}' appear in the word '{word}'?{NUM}"
        return prompt, str(word.count(letter)), "number", ()
    if kind == 1:
        return f"How many letters are in the word '{word}'?{NUM}", str(len(word)), "number", ()
    return f"What is the first letter of the word '{word}'? Answer with the letter.", word[0], "regex", ()


def classify(rng: random.Random) -> Item:
    kind = rng.randrange(3)
    if kind == 0:
        good = rng.random() < 0.5
        text = rng.choice(REVIEW).format(
            n=rng.choice(SUBJECTS),
            w=rng.choice(POSITIVE if good else NEGATIVE),
            v="surely" if good else "never",
        )
        prompt = f'Is the sentiment of this review positive or negative? "{text}" Answer with one word.'
        return prompt, "positive" if good else "negative", "choice", ("positive", "negative")
    if kind == 1:
        topic = rng.choice(sorted(TOPICS))
        text = rng.choice(TOPICS[topic])
        choices = tuple(sorted(TOPICS))
        prompt = f'Which topic is this sentence about: {", ".join(choices)}? "{text}" Answer with the topic.'
        return prompt, topic, "choice", choices
    animal = rng.choice(sorted(ANIMALS))
    choices = ("mammal", "bird", "fish", "reptile")
    prompt = f"Is a {animal} a mammal, a bird, a fish or a reptile? Answer with one word."
    return prompt, ANIMALS[animal], "choice", choices


def yes_no(rng: random.Random) -> Item:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        return (
            f"Is {a} greater than {b}? Answer yes or no.",
            "yes" if a > b else "no",
            "choice",
            ("yes", "no"),
        )
    if kind == 1:
        n = rng.randint(1, 500)
        return (
            f"Is {n} an even number? Answer yes or no.",
            "yes" if n % 2 == 0 else "no",
            "choice",
            ("yes", "no"),
        )
    if kind == 2:
        n = rng.randint(2, 100)
        prime = all(n % d for d in range(2, int(n**0.5) + 1))
        return f"Is {n} a prime number? Answer yes or no.", "yes" if prime else "no", "choice", ("yes", "no")
    word, letter = rng.choice(WORDS), rng.choice("abcdefghilmnoprstuw")
    prompt = f"Does the word '{word}' contain the letter '{letter}'? Answer yes or no."
    return prompt, "yes" if letter in word else "no", "choice", ("yes", "no")


TASKS: dict[str, Callable[[random.Random], Item]] = {
    "arithmetic": arithmetic,
    "word_problem": word_problem,
    "units": units,
    "dates": dates,
    "facts": facts,
    "letters": letters,
    "classify": classify,
    "yes_no": yes_no,
}
WEIGHTS = {
    "arithmetic": 3,
    "word_problem": 1,
    "units": 2,
    "dates": 2,
    "facts": 2,
    "letters": 2,
    "classify": 2,
}


def generate(seed: int, count: int, prefix: str, exclude: set[str]) -> list[EvalItem]:
    """`count` items with prompts not in `exclude` (which grows); each answer is checked by its own grader."""
    rng = random.Random(seed)
    names = sorted(TASKS)
    weights = [WEIGHTS.get(name, 1) for name in names]
    items: list[EvalItem] = []
    while len(items) < count:
        task = rng.choices(names, weights)[0]
        prompt, answer, grader, choices = TASKS[task](rng)
        if prompt in exclude:
            continue
        exclude.add(prompt)
        item = EvalItem(f"{prefix}-{len(items):04d}", prompt, answer, grader, choices, task)  # type: ignore[arg-type]
        reply = _reference_reply(item)
        if not item.is_correct(reply):
            raise AssertionError(f"generator bug: {item} rejects its own answer {reply!r}")
        items.append(item)
    return items


def _reference_reply(item: EvalItem) -> str:
    """What a perfect answerer would say (regex answers are patterns, so spell one match out)."""
    if item.grader != "regex":
        return f"The answer is {item.answer}."
    return item.answer.removeprefix(r"(?i)\b").replace(r"\s+", " ").replace("(?!\\d)", "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train", type=int, default=1400)
    parser.add_argument("--heldout", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("bench/evalsets"))
    args = parser.parse_args()
    seen: set[str] = set()
    heldout = generate(args.seed * 1000 + 1, args.heldout, "heldout", seen)
    train = generate(args.seed * 1000 + 2, args.train, "train", seen)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("heldout", heldout)):
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in items))
        print(f"wrote {len(items)} items to {path}")


if __name__ == "__main__":
    main()
