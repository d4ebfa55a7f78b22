"""Transfer cues read the shape of a prompt and its reply: options listed, what they ask for, what the reply names."""

from __future__ import annotations

from edged.routing.cues import CUE_NAMES, N_CUES, prompt_options, transfer_cues

_MC = "Which is a sleep disorder?\n\nA. Dyslexia\nB. Narcolepsy\nC. Epilepsy\n\nAnswer with the letter."


def _cues(prompt: str, reply: str) -> dict[str, float]:
    values = transfer_cues(prompt, reply)
    assert len(values) == N_CUES
    return dict(zip(CUE_NAMES, values, strict=True))


def test_prompt_options_need_an_unbroken_run_from_a() -> None:
    assert prompt_options(_MC) == ["Dyslexia", "Narcolepsy", "Epilepsy"]
    assert prompt_options("B. one\nC. two") == []
    assert prompt_options("A. only one") == []


def test_a_reply_naming_one_option() -> None:
    cues = _cues(_MC, "B")
    assert (cues["options"], cues["names_one"], cues["names_several"], cues["names_none"]) == (3, 1, 0, 0)
    assert cues["short_reply"] == 1


def test_a_reply_naming_several_or_none() -> None:
    assert _cues(_MC, "Narcolepsy or epilepsy, I think")["names_several"] == 1
    assert _cues(_MC, "I do not know.")["names_none"] == 1


def test_yes_no_and_numbers() -> None:
    cues = _cues("Is 7 prime? Answer yes or no.", "Yes, it is.")
    assert (cues["asks_yes_no"], cues["names_one"]) == (1, 1)
    copied = _cues("Tom has 12 apples and eats 5. How many are left? Answer with just the number.", "12")
    assert (copied["asks_number"], copied["number_from_prompt"]) == (1, 1)
    assert _cues("Tom has 12 apples and eats 5. How many are left?", "7")["number_from_prompt"] == 0


def test_a_passage_before_the_question() -> None:
    passage = "word " * 100
    assert _cues(f"{passage}\n\nQuestion: what?", "x")["has_passage"] == 1
    assert _cues("Question: what?", "x")["has_passage"] == 0
