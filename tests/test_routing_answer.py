"""The answer model: features of a finished local answer, the shipped ONNX model (sha256-checked, version
checked), the AUTO score of a finished answer stacking its score with the signals and cues, and the
signal-only fallback for another local model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.errors import ModelError, ModelIntegrityError
from edged.routing.answer_features import N_ANSWER_FEATURES, answer_features, reply_properties
from edged.routing.cues import N_CUES, transfer_cues
from edged.routing.features import N_FEATURES, prompt_features
from edged.routing.router import MANIFEST_NAME, PromptRouter, effective_weights
from edged.routing.score import auto_score
from edged.routing.stack import STACK_INPUTS, stacked_score

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "router"
SURE = ConfidenceSummary.of([TokenSignals(-0.05, 4.0, 0.2)] * 6)


@pytest.fixture
def router_copy(tmp_path: Path) -> Path:
    target = tmp_path / "router"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("*.jsonl"))
    return target


def test_reply_properties_relate_the_reply_to_the_prompt() -> None:
    echo = reply_properties("What is 674 - 2? Answer with just the number.", "674 - 2 is 674.", 8)
    assert {"echo=1", "echofirst=1", "echolast=0", "rnum=3", "lastlen=3", "maxed=0"} <= set(echo)
    fresh = reply_properties("What is 674 - 2?", "The answer is 672.", 48)
    assert {"echo=0", "rnum=1", "maxed=1"} <= set(fresh)
    one = reply_properties(
        "Is a dog a mammal, a bird, a fish or a reptile? Answer with one word.", "Mammal.", 3
    )
    assert "named=1" in one
    two = reply_properties("Is it positive or negative?", "It is neither positive nor negative.", 9)
    assert "named=2" in two
    assert "named=0" in reply_properties("Is it positive or negative?", "It is neutral.", 5)
    assert not any(p.startswith("named") for p in reply_properties("What is 2 + 2?", "4", 1))


def test_answer_features_start_with_the_prompt_features() -> None:
    prompt = "How many letters are in the word 'banana'? Answer with just the number."
    vector = answer_features(prompt, "The word 'banana' has 6 letters.", SURE)
    assert vector.shape == (N_ANSWER_FEATURES,)
    assert (vector[:N_FEATURES] == prompt_features(prompt)).all()
    assert vector[N_FEATURES] == pytest.approx(-0.05)  # mean log-probability, first of the dense block
    assert list(vector[-N_CUES:]) == pytest.approx(transfer_cues(prompt, "The word 'banana' has 6 letters."))
    assert (answer_features(prompt, "x", SURE) != vector).any()
    assert answer_features("", "", ConfidenceSummary()).shape == (N_ANSWER_FEATURES,)
    assert answer_features("a" * 100_000, "b " * 100_000, SURE).shape == (N_ANSWER_FEATURES,)


def test_shipped_answer_model_loads_and_scores() -> None:
    router = PromptRouter.load(SHIPPED)
    assert router.has_answer_model
    score = router.score_answer("What is 17 + 25? Answer with just the number.", "17 + 25 = 42.", SURE)
    assert score is not None
    assert 0.0 < score < 1.0
    assert router.manifest.answer is not None
    assert tuple(router.manifest.answer.stack.inputs) == STACK_INPUTS
    assert not router.signal_only


def test_answer_model_learned_what_a_number_copied_from_the_prompt_means() -> None:
    """The same reply property (its last number is one of the prompt's) means wrong after a conversion and
    right after a look-up: the (property x prompt word) crosses carry that."""
    router = PromptRouter.load(SHIPPED)
    convert = "How many grams are in 6 kilograms? Answer with just the number."
    copied = router.score_answer(convert, "6 kilograms is 6 grams.", SURE)
    converted = router.score_answer(convert, "6 kilograms is 6000 grams.", SURE)
    assert copied is not None
    assert converted is not None
    assert converted > copied
    look_up = "Eli is 51, Hana is 68, Gus is 33. How old is Eli? Answer with just the number."
    found = router.score_answer(look_up, "Eli is 51.", SURE)
    invented = router.score_answer(look_up, "Eli is 84.", SURE)
    assert found is not None
    assert invented is not None
    assert found > invented


def test_answer_model_learned_that_naming_no_option_is_wrong() -> None:
    router = PromptRouter.load(SHIPPED)
    prompt = 'Is the sentiment of this review positive or negative? "A rude film, I never recommend it."'
    neutral = router.score_answer(prompt, "The sentiment of this review is neutral.", SURE)
    named = router.score_answer(prompt, "The sentiment of this review is negative.", SURE)
    assert neutral is not None
    assert named is not None
    assert named > neutral


def test_finished_score_stacks_the_answer_score() -> None:
    router = PromptRouter.load(SHIPPED)
    prompt, reply = "What is 3 + 4? Answer with just the number.", "3 + 4 = 7."
    answer = router.score_answer(prompt, reply, SURE)
    identity = ScoreWeights(bias=0.0, router_logit=1.0)
    assert answer is not None
    assert router.manifest.answer is not None
    expected = stacked_score(answer, prompt, reply, SURE, router.manifest.answer.stack)
    # The answer model's own weights, whatever the caller's (those serve the cascade's router-score formula).
    assert router.finished_score(prompt, reply, 0.5, SURE, identity) == pytest.approx(expected, abs=1e-9)
    assert router.finished_score(prompt, reply, 0.01, SURE, identity) == pytest.approx(expected, abs=1e-9)


def test_a_router_without_answer_model_falls_back_to_the_router_score(router_copy: Path) -> None:
    manifest = router_copy / MANIFEST_NAME
    text = manifest.read_text()
    manifest.write_text(text[: text.index("[answer]")] + text[text.index("[metrics]") :])
    router = PromptRouter.load(router_copy)
    assert not router.has_answer_model
    assert router.score_answer("What is 3 + 4?", "7", SURE) is None
    weights = ScoreWeights(bias=0.0, router_logit=1.0)
    assert router.finished_score("What is 3 + 4?", "7", 0.3, SURE, weights) == pytest.approx(0.3, abs=1e-6)


def test_a_tampered_answer_model_is_refused(router_copy: Path) -> None:
    model = router_copy / "answer.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"answer\.onnx: sha256"):
        PromptRouter.load(router_copy)


def test_a_stale_answer_feature_version_is_refused(router_copy: Path) -> None:
    manifest = router_copy / MANIFEST_NAME
    text = manifest.read_text()
    head, tail = text.split("[answer]")
    manifest.write_text(head + "[answer]" + tail.replace("feature_version = ", "feature_version = 9", 1))
    with pytest.raises(ModelError, match="answer feature_version 9"):
        PromptRouter.load(router_copy)


def test_a_missing_answer_model_is_a_model_error(router_copy: Path) -> None:
    (router_copy / "answer.onnx").unlink()
    with pytest.raises(ModelError, match="cannot be read"):
        PromptRouter.load(router_copy)


def test_the_stack_sees_the_cues() -> None:
    """The same reply confidence: a reply naming several of the offered options scores lower than one
    naming exactly one (the cue the leave-one-dataset-out runs found to transfer)."""
    router = PromptRouter.load(SHIPPED)
    prompt = "Which is a mammal?\nA. trout\nB. whale\nC. crow\nD. newt\nAnswer with the letter."
    weights = router.manifest.score_weights
    one = router.finished_score(prompt, "B. whale", None, SURE, weights)
    several = router.finished_score(prompt, "A. trout or B. whale or C. crow", None, SURE, weights)
    assert several < one


def test_a_stack_missing_an_input_is_refused(router_copy: Path) -> None:
    manifest = router_copy / MANIFEST_NAME
    lines = [line for line in manifest.read_text().splitlines() if not line.startswith("names_several =")]
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match=r"answer\.stack\.inputs.*missing \['names_several'\]"):
        PromptRouter.load(router_copy)


def test_a_router_for_another_local_model_is_signal_only() -> None:
    """Served with another GGUF, the router gives no score and every AUTO score is the confidence signals'
    alone, by [signal_weights] (or the profile's calibrated ones)."""
    from edged.config.profile import DeviceProfile  # noqa: PLC0415 - only this test needs a profile

    own = PromptRouter.load(SHIPPED, served_sha256=PromptRouter.load(SHIPPED).manifest.local_model.sha256)
    assert not own.signal_only
    other = PromptRouter.load(SHIPPED, served_sha256="0" * 64)
    assert other.signal_only
    weights = effective_weights(DeviceProfile(), other)
    assert weights == other.manifest.signal_weights
    assert weights != other.manifest.score_weights
    prompt, reply = "What is 3 + 4? Answer with just the number.", "3 + 4 = 7."
    expected = auto_score(None, SURE, weights)
    assert other.finished_score(prompt, reply, 0.9, SURE, weights) == pytest.approx(expected, abs=1e-12)
    assert own.finished_score(prompt, reply, 0.9, SURE, weights) != pytest.approx(expected, abs=1e-6)
