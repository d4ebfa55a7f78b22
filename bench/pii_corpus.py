"""A generated PII corpus for the privacy gate: Faker values (MIT) in many locales, wrapped in assistant
requests and multi-turn conversations, with gold values; plus clean prompts that must stay allowed.

    .venv/bin/python bench/pii_corpus.py --slice dev --out /tmp/dev.jsonl

Three slices, each seeded and deterministic (for a given Faker release, pinned in the dev extra):

    dev   tuning allowed: DEV_LOCALES, DEV_TEMPLATES, DEV_CLEAN, seed 13
    test  held back, never tuned on: other seeds, TEST_LOCALES (a different subset), TEST_TEMPLATES, TEST_CLEAN
    wide  the dev templates filled from WIDE_LOCALES (31 locales in neither list, Latin script), 40 fills per
          template, seed 2024: how the recognizers carry to countries they were not written for. Seeds 4242,
          777 and 31337 of the same were tuned on (3 December 2026); seed 2024 was not (docs/sovereignty.md)

Entries are dicts in the corpus format of edged.sovereignty.evaluation ({"id", "messages", "entities"}) plus
"locale". A template is a list of (role, text) turns whose `{TYPE}` slots are filled with values of that
type; every filled value is a gold value.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from typing import Any

from faker import Faker

DEV_LOCALES = (
    "en_US",
    "en_GB",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pt_BR",
    "pl_PL",
    "sv_SE",
    "tr_TR",
)
TEST_LOCALES = (
    "en_US",
    "de_DE",
    "en_IE",
    "en_CA",
    "en_AU",
    "de_AT",
    "fr_CH",
    "pt_PT",
    "da_DK",
    "fi_FI",
    "cs_CZ",
    "ro_RO",
    "hu_HU",
)
WIDE_LOCALES = (
    "en_NZ", "en_IN", "en_NG", "en_KE", "es_MX", "es_AR", "es_CO", "es_CL", "fr_BE", "fr_CA", "nl_BE",
    "it_CH", "de_CH", "sk_SK", "sl_SI", "hr_HR", "bs_BA", "lt_LT", "lv_LV", "et_EE", "is_IS", "no_NO",
    "id_ID", "sq_AL", "az_AZ", "ga_IE", "mt_MT", "yo_NG", "zu_ZA", "sw", "vi_VN",
)  # fmt: skip
SEEDS = {"dev": 13, "test": 90210, "wide": 2024}
PER_TEMPLATE = {"dev": 6, "test": 6, "wide": 40}

Turns = tuple[tuple[str, str], ...]
Value = Callable[[Faker, random.Random], str]


def _grouped(digits: str, size: int = 4) -> str:
    return " ".join(digits[i : i + size] for i in range(0, len(digits), size))


def _dob(fake: Faker, rng: random.Random) -> str:
    fmt = rng.choice(("%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y", "%B %d, %Y", "%d %B %Y"))
    return fake.date_of_birth(minimum_age=18, maximum_age=90).strftime(fmt)


def _password(fake: Faker, rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "".join(rng.choice("0123456789") for _ in range(rng.choice((4, 6))))  # a PIN
    return str(fake.password(length=rng.randint(8, 16), special_chars=rng.random() < 0.7))


def _tax_id(fake: Faker, rng: random.Random) -> str:
    try:
        return str(fake.vat_id())
    except AttributeError:
        return fake.bothify(rng.choice(("##-#######", "###-##-####", "#########")))


VALUES: dict[str, Value] = {
    "PERSON": lambda f, r: f"{f.first_name()} {f.last_name()}",
    "STREET_ADDRESS": lambda f, r: (
        re.sub(r"\s*\n\s*", ", ", f.address()) if r.random() < 0.7 else f.street_address()
    ),
    "PHONE_NUMBER": lambda f, r: str(f.phone_number()),
    "EMAIL_ADDRESS": lambda f, r: str(f.email()),
    "IBAN_CODE": lambda f, r: str(f.iban()) if r.random() < 0.6 else _grouped(str(f.iban())),
    "CREDIT_CARD": lambda f, r: (
        str(f.credit_card_number()) if r.random() < 0.5 else _grouped(str(f.credit_card_number()))
    ),
    "NATIONAL_ID": lambda f, r: str(f.ssn()),
    "PASSPORT": lambda f, r: str(f.passport_number()),
    "DRIVER_LICENSE": lambda f, r: f.bothify(
        r.choice(("?#######", "??######", "#########", "?###-####-####", "?##-##-####"))
    ).upper(),
    "PASSWORD": _password,
    "BANK_ACCOUNT": lambda f, r: r.choice(
        (str(f.bban()), str(f.aba()), f.numerify("########"), f.numerify("##-##-##"))
    ),
    "MEDICAL_ID": lambda f, r: f.bothify(
        r.choice(("MRN-#######", "########", "??######", "#######-?"))
    ).upper(),
    "INSURANCE_ID": lambda f, r: f.bothify(
        r.choice(("???#########", "##########", "?#-######-##", "???-###-####"))
    ).upper(),
    "TAX_ID": _tax_id,
    "DATE_OF_BIRTH": _dob,
}


def _t(*turns: str) -> Turns:
    """Turns alternate user, assistant, user, ...; a turn starting `system:` is a system prompt."""
    out = []
    for index, text in enumerate(turns):
        if text.startswith("system:"):
            out.append(("system", text[len("system:") :].strip()))
        else:
            out.append(("user" if index % 2 == 0 else "assistant", text))
    return tuple(out)


DEV_TEMPLATES: tuple[Turns, ...] = (
    _t("My name is {PERSON} and I need help writing a cover letter for a nursing job."),
    _t("Call {PERSON} tomorrow about the invoice and remind them of the deadline."),
    _t("Please ship to {PERSON}, {STREET_ADDRESS}. Leave it with the neighbour if nobody is home."),
    _t("cc {PERSON} on the reply and keep it short."),
    _t("Book it under {PERSON}, two people, Friday 8pm."),
    _t("Dear {PERSON},\n\nthank you for your letter. Could you tidy up this reply for me?"),
    _t("Draft a thank-you note. Signed, {PERSON}"),
    _t("Write to Mr {PERSON} that his parcel is delayed."),
    _t("Dr. {PERSON} asked for the lab results to be summarised in plain language."),
    _t("Officer {PERSON} took my statement; help me write a follow-up email."),
    _t("Ms {PERSON} will join the meeting. Draft an agenda for one hour."),
    _t("My password is {PASSWORD} - is it strong enough?"),
    _t("The wifi password: {PASSWORD}. Write a note for guests explaining how to connect."),
    _t("My PIN is {PASSWORD}, can you remind me to change it next month?"),
    _t("Fill in the form: passport {PASSPORT}, date of birth {DATE_OF_BIRTH}."),
    _t("My passport number is {PASSPORT} and it expires soon. What do I need to renew it?"),
    _t("Driver's license {DRIVER_LICENSE}; write a letter disputing the parking fine."),
    _t("licence number {DRIVER_LICENSE} - the rental company wants it by email. Draft it."),
    _t("Transfer the rent to account {BANK_ACCOUNT} and note the routing number {BANK_ACCOUNT}."),
    _t("My IBAN is {IBAN_CODE}. Write a message asking the landlord to refund the deposit."),
    _t("Charge card {CREDIT_CARD} for the conference fee and send me a receipt template."),
    _t("Insurance policy {INSURANCE_ID}, member ID {INSURANCE_ID}. Help me appeal the denied claim."),
    _t("MRN {MEDICAL_ID}: summarise the discharge note for the patient's family."),
    _t("My tax id is {TAX_ID}. What should I put on the invoice footer?"),
    _t("SSN {NATIONAL_ID} - which form do I need for the benefits application?"),
    _t("DOB {DATE_OF_BIRTH}. Am I old enough for the senior discount?"),
    _t("You can reach me on {PHONE_NUMBER} or {EMAIL_ADDRESS}. Rewrite that more formally."),
    _t("Email {EMAIL_ADDRESS} about the invoice and ask for a new due date."),
    _t("I live at {STREET_ADDRESS}. Which recycling bins go out on Tuesday?"),
    _t(
        "system: You are a helpful travel assistant.",
        "I need a hotel near the station.",
        "Sure - under which name should I book?",
        "Under {PERSON}. My phone is {PHONE_NUMBER}.",
    ),
    _t(
        "Help me fill in a bank form.",
        "Of course. What are the account details?",
        "Account holder {PERSON}, IBAN {IBAN_CODE}, tax id {TAX_ID}.",
    ),
    _t(
        "I'm booking a flight for my colleague.",
        "What is the passenger's name and passport?",
        "{PERSON}, passport {PASSPORT}, born {DATE_OF_BIRTH}.",
    ),
    _t(
        "My doctor's office needs my details.",
        "Which details do they need?",
        "MRN {MEDICAL_ID}, insurance member {INSURANCE_ID}, phone {PHONE_NUMBER}.",
    ),
)

TEST_TEMPLATES: tuple[Turns, ...] = (
    _t("Hi, I'm {PERSON}. Can you help me plan a week of vegetarian dinners?"),
    _t("Please phone {PERSON} and tell them the plumber comes at nine."),
    _t("Send the contract to {PERSON} at {STREET_ADDRESS} by courier."),
    _t("Put {PERSON} in cc and forward the minutes."),
    _t("Reserve a table under the name {PERSON} for four."),
    _t("Hello {PERSON}, the package left our warehouse. Polish this sentence."),
    _t("Best regards,\n{PERSON}\n\nCan you make the email above sound friendlier?"),
    _t("Mrs {PERSON} complained about the noise; suggest a polite answer."),
    _t("Prof. {PERSON} wants the abstract under 200 words. Shorten it."),
    _t("Patient {PERSON}, DOB {DATE_OF_BIRTH}, asks about side effects of ibuprofen."),
    _t("The login password for the shared laptop is {PASSWORD}; write instructions for the intern."),
    _t("pin: {PASSWORD} (for the door). Make a sign for the cleaners."),
    _t("Passport no. {PASSPORT} - translate the visa letter into English."),
    _t("Here is my driving licence {DRIVER_LICENSE}, please check the form is complete."),
    _t("Routing {BANK_ACCOUNT}, account no {BANK_ACCOUNT}. Write a direct deposit request."),
    _t("Refund to {IBAN_CODE} please - write it up for accounting."),
    _t("Card number {CREDIT_CARD} was charged twice. Draft a complaint to the bank."),
    _t("Policy number {INSURANCE_ID}: how do I add my son to the plan?"),
    _t("Medical record {MEDICAL_ID} - explain the blood test values."),
    _t("Tax ID {TAX_ID}; is VAT due on this invoice?"),
    _t("National ID {NATIONAL_ID}, what documents does the embassy need?"),
    _t("Text me at {PHONE_NUMBER} when the order ships. Write that as an auto-reply."),
    _t("Our office is at {STREET_ADDRESS}; write directions from the station."),
    _t("Forward this to {EMAIL_ADDRESS}, subject 'Quarterly numbers'."),
    _t(
        "I need to change a delivery.",
        "What is the new address?",
        "{STREET_ADDRESS}, attention {PERSON}, mobile {PHONE_NUMBER}.",
    ),
    _t(
        "system: You help with household paperwork.",
        "The utility wants my details for autopay.",
        "Which details?",
        "Account {BANK_ACCOUNT}, card {CREDIT_CARD}, SSN {NATIONAL_ID}.",
    ),
    _t(
        "Can you draft a sick note email?",
        "Sure, who is it from and for which employer?",
        "From {PERSON}, member ID {INSURANCE_ID}, passport {PASSPORT}.",
    ),
)

_VERSIONS = ("3.11.4", "v2.0.1", "1.26.3", "v18.19.0", "2.2.360", "0.17.6", "v5", "4.0.0-rc1")
_PRODUCTS = (
    "Raspberry Pi 5",
    "PostgreSQL 16",
    "Python 3.12",
    "Ubuntu 24.04",
    "Kubernetes",
    "Excel",
    "Jetson Orin",
)
_EVENTS = (
    ("the fall of the Berlin Wall", "9 November 1989"),
    ("the Moon landing", "20 July 1969"),
    ("the signing of the Magna Carta", "15 June 1215"),
    ("the storming of the Bastille", "14 July 1789"),
    ("the first powered flight", "17 December 1903"),
)

DEV_CLEAN: tuple[str, ...] = (
    "Email the team a summary of the sprint review and list the open risks.",
    "Call the function twice and explain why the second call is faster:\n\ndef f(x):\n    return x * 2",
    "Summarise the plot of Hamlet in three sentences.",
    "What is 17 * 23 + 144 / 12?",
    "Upgrade from Python {VERSION} to the latest release: what breaks?",
    "Compare {PRODUCT} and {PRODUCT2} for a home lab.",
    "What happened on {DATE}, the day of {EVENT}?",
    "Write a SQL query that counts orders per day for the last 30 days.",
    "Translate 'good morning' into German, French and Spanish.",
    "Convert 72 degrees Fahrenheit to Celsius and show the formula.",
    "Explain the difference between TCP and UDP for a beginner.",
    "Draft a short poem about autumn leaves.",
    "Release notes for {VERSION}: fixed a crash in the parser, faster startup.",
    "Schedule a weekly stand-up and write the calendar description.",
    "Solve for x: 3x + 7 = 22.",
    "Please list five healthy breakfast ideas.",
    "Book a meeting room for Thursday and write the invite text.",
    "Check this regex for bugs: ^[a-z0-9_]{3,16}$",
    "Monday Morning Planning: give me a template with three sections.",
    "The Quick Brown Fox jumps over the lazy dog - count the letters.",
    "Email the landlord about the broken heater and ask when it will be fixed.",
    "Send a reminder to the whole team that the office closes early on Friday.",
    "Ship the release once the tests pass, then write a short announcement.",
    "Invite everyone to the retrospective and suggest three discussion topics.",
    "Forward the agenda to the board with a one-line summary on top.",
    "Order Pizza For The Team: write a fun Slack message.",
    "Quarterly Report Draft - tighten the introduction paragraph.",
    "Install {PRODUCT} on a laptop with 16 GB of RAM and a 512 GB SSD; list the steps.",
    "What changed between {VERSION} and {VERSION}? Summarise for a changelog.",
    "Is an RTX 4090 with 24GB enough to fine-tune a 7B model in fp16?",
    "Explain the commit a3f9c2e in plain words: it renames utils.py to helpers.py.",
    "Write a bash loop that prints the numbers 1 to 100 and the squares of the even ones.",
    "Compute 2^32 = 4294967296 divided by 1024 and explain each step.",
    "Why was the year 1848 called the Springtime of Peoples?",
    "What happened at the Battle of Hastings on 14 October 1066?",
    "Parse the date 2024-03-15T09:30:00Z in JavaScript and print the weekday.",
    "Write a regex that matches semantic versions like 1.2.3-beta.4.",
    "Explain the x86_64 calling convention and the role of the RSP register.",
)

TEST_CLEAN: tuple[str, ...] = (
    "Text the group that practice is cancelled because of rain.",
    "Message the channel with a reminder about the deadline.",
    "Write a Python function that flattens a nested list, with type hints.",
    "Integrate x^2 * sin(x) dx and show each step.",
    "pip install requests=={VERSION} fails on my machine. What does that mean?",
    "Is {PRODUCT} a good choice for a small office?",
    "Why did {EVENT} happen on {DATE}?",
    "Explain list comprehensions with an example using range(10).",
    "Give me a packing list for a weekend of hiking.",
    "What is the derivative of ln(x^2 + 1)?",
    "Summarize the key ideas of stoicism.",
    "Create a README section describing the install steps for {PRODUCT}.",
    "Rewrite this paragraph in a friendlier tone: The Meeting Has Been Moved.",
    "Find the bug: for i in range(len(xs)): xs.remove(xs[i])",
    "How many seconds are there in 3 weeks?",
    "Our changelog says {VERSION} dropped support for Windows 7. Draft an announcement.",
    "Call the API with a timeout of 30 seconds and retry three times on HTTP 503.",
    "Book Club Questions: suggest five for a novel about the French Revolution.",
    "Remind me how the Treaty of Versailles was signed on 28 June 1919.",
    "Add a unit test for the parser in version {VERSION}.",
    "Translate the headline Market Opens Higher After Long Weekend into Italian.",
    "Calculate the area of a circle with radius 12.5 cm to two decimals.",
    "Deploy the container to the staging cluster and check the logs for errors.",
    "Which {PRODUCT} release first supported ARM64 boards?",
)


def _fill_clean(template: str, rng: random.Random) -> str:
    event, date = rng.choice(_EVENTS)
    products = rng.sample(_PRODUCTS, 2)
    return (
        template.replace("{VERSION}", rng.choice(_VERSIONS))
        .replace("{PRODUCT2}", products[1])
        .replace("{PRODUCT}", products[0])
        .replace("{EVENT}", event)
        .replace("{DATE}", date)
    )


_SLOT = re.compile(r"\{([A-Z_]+)\}")


def _fill(turns: Turns, fake: Faker, rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    entities: list[dict[str, str]] = []
    messages = []
    for role, text in turns:

        def value(match: re.Match[str]) -> str:
            entity = match.group(1)
            filled = VALUES[entity](fake, rng).strip()
            entities.append({"type": entity, "value": filled})
            return filled

        messages.append({"role": role, "content": _SLOT.sub(value, text)})
    return messages, entities


def generate(
    slice_name: str, *, per_template: int | None = None, clean_per_template: int = 3, seed: int | None = None
) -> list[dict[str, Any]]:
    """The slice's entries: each template filled `per_template` times (default: PER_TEMPLATE's, rotating
    through the locales), and each clean template `clean_per_template` times; `seed` replaces the slice's."""
    if slice_name not in SEEDS:
        raise ValueError(f"slice {slice_name!r}: one of {sorted(SEEDS)}")
    seed = SEEDS[slice_name] if seed is None else seed
    per_template = PER_TEMPLATE[slice_name] if per_template is None else per_template
    locales = {"dev": DEV_LOCALES, "test": TEST_LOCALES, "wide": WIDE_LOCALES}[slice_name]
    templates = TEST_TEMPLATES if slice_name == "test" else DEV_TEMPLATES
    clean = TEST_CLEAN if slice_name == "test" else DEV_CLEAN
    rng = random.Random(seed)
    fakers = {}
    for index, locale in enumerate(locales):
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed * 100 + index)
    entries: list[dict[str, Any]] = []
    for t_index, turns in enumerate(templates):
        for n in range(per_template):
            locale = locales[(t_index * per_template + n) % len(locales)]
            messages, entities = _fill(turns, fakers[locale], rng)
            entries.append(
                {
                    "id": f"{slice_name}-{t_index}-{n}",
                    "locale": locale,
                    "messages": messages,
                    "entities": entities,
                }
            )
    for c_index, template in enumerate(clean):
        for n in range(clean_per_template):
            text = _fill_clean(template, rng)
            entries.append(
                {
                    "id": f"{slice_name}-clean-{c_index}-{n}",
                    "locale": "clean",
                    "messages": [{"role": "user", "content": text}],
                    "entities": [],
                }
            )
    return entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--slice", choices=sorted(SEEDS), default="dev")
    parser.add_argument("--out", help="JSON lines file (default: stdout)")
    args = parser.parse_args()
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in generate(args.slice))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(lines)
    else:
        sys.stdout.write(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
