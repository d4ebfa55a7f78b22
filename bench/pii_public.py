"""The privacy gate's recall on public PII corpora written by others (not the Faker corpus of bench/pii_corpus.py).

    .venv/bin/python bench/pii_public.py PATH --format presidio-research|value-list|ai4privacy|kaggle-tokens \
        [--n 200] [--seed 1] [--rest] [--examples 10]

PATH is one dataset file (JSON, or JSON compressed with gzip: `.gz`). Formats (each a JSON array, or JSON lines):

    presidio-research  {"full_text", "spans": [{"entity_type", "entity_value", "start_position", "end_position"}]}
    value-list         {"text", "NER": [{"entity", "label"}]}: labelled values without offsets
    ai4privacy         {"source_text", "privacy_mask": [{"value", "start", "end", "label"}]} (a list, or its
                       string form as the 200k parquet export writes it); the ai4privacy pii-masking datasets
    kaggle-tokens      {"tokens", "trailing_whitespace", "labels": BIO}: The Learning Agency Lab's PII essays

The two corpora vendored in tests/data/pii_public (unchanged, each with its licence; results in
docs/sovereignty.md, "Public corpora"):

    microsoft/presidio-research@7622dec1e5f7d25dc60b57c28c39f4c4af197018 data/synth_dataset_v2.json, MIT, 1,500
        template-generated texts, gzip-compressed. Development slice: the sample --n 400 --seed 1; the
        report slice, never tuned on, is the other 1,100 texts (--rest):
        .venv/bin/python bench/pii_public.py tests/data/pii_public/presidio_research_synth_dataset_v2.json.gz \
            --format presidio-research --n 400 --seed 1 --rest
    Nannigalaxy/PII-synthetic_dataset@b298d6965491b7dbcc30bd67cf27fe6104d07173 dataset/pii_syn_nano_en.json,
        MIT, 149 LLM-written texts (all of them development data: its leaks were read):
        .venv/bin/python bench/pii_public.py tests/data/pii_public/nannigalaxy_pii_syn_nano_en.json \
            --format value-list --n 200

A fixed seeded sample of --n texts goes through the gate exactly as bench/pii_scan.py's generated slice does
for PREFER_CLOUD with the default policy: SensitivityGate.assess (scan cache off) on one user message; a text
the verdict keeps local sends nothing; otherwise a labelled value is out when it occurs raw in the released
(redacted) text. The dataset's labels are mapped to edged's entity types (LABELS); labels with no counterpart
in edged's data classes are reported as ignored, not scored.

Per edged entity type it prints: values; "kept" (the value does not occur raw in what is sent: pii_scan's
measure); "hidden" (stricter: no character of it is sent, i.e. the text stays local or every occurrence is
covered by findings); "typed" (covered by findings of the value's own data class); and the leaked values with
their label, what the gate found on them and 60 characters of context. Texts without any label give the
clean-text rate of needless LOCAL_ONLY / REDACT verdicts.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for pii_scan

from pii_scan import GATES, _covered_by, _of_class, _rate, load_edged  # sets the env pii_scan sets

from edged.config.privacy import DataPolicy
from edged.domain import Message
from edged.sovereignty.detector import Finding
from edged.sovereignty.evaluation import released_text

# Dataset label -> edged entity type (docs/sovereignty.md, "Data classes and policies"). Upper-cased labels.
LABELS: dict[str, dict[str, str]] = {
    "presidio-research": {
        "PERSON": "PERSON",
        "STREET_ADDRESS": "STREET_ADDRESS",
        "PHONE_NUMBER": "PHONE_NUMBER",
        "EMAIL_ADDRESS": "EMAIL_ADDRESS",
        "CREDIT_CARD": "CREDIT_CARD",
        "IBAN_CODE": "IBAN_CODE",
        "US_SSN": "US_SSN",
        "US_DRIVER_LICENSE": "DRIVER_LICENSE",
        "IP_ADDRESS": "IP_ADDRESS",
    },
    "value-list": {
        "PERSON": "PERSON",
        "EMAIL": "EMAIL_ADDRESS",
        "PHONE": "PHONE_NUMBER",
        "PASSWORD": "PASSWORD",
        "SSN": "US_SSN",
        "PASSPORT": "PASSPORT",
        "PASSPORT_NUM": "PASSPORT",
        "AADHAR": "NATIONAL_ID",
        "VOTER_ID": "NATIONAL_ID",
        "TAX_ID": "TAX_ID",
        "TAXID": "TAX_ID",
        "PAN": "TAX_ID",  # India's Permanent Account Number is its tax id
        "DRIVER_LICENSE": "DRIVER_LICENSE",
        "DRIVERS_LICENSE": "DRIVER_LICENSE",
        "DRIVER_LICENSE_NUM": "DRIVER_LICENSE",
        "LICENSE": "DRIVER_LICENSE",
        "IBAN": "IBAN_CODE",
        "CREDIT_CARD": "CREDIT_CARD",
        "ACCOUNT": "BANK_ACCOUNT",
        "ACCOUNT_NUM": "BANK_ACCOUNT",
        "ACCOUNT_NUMBER": "BANK_ACCOUNT",
        "BANK_ACCOUNT": "BANK_ACCOUNT",
        "BANK_ACCOUNT_NUM": "BANK_ACCOUNT",
        "ROUTING_NUMBER": "BANK_ACCOUNT",  # a bank's number, sent with an account: financial
        "PATIENT_ID": "MEDICAL_ID",
        "PID": "MEDICAL_ID",
        "MEDICAL_RECORD": "MEDICAL_ID",
        "INSURANCE_ID": "INSURANCE_ID",
        "INSURANCE_POLICY_NUM": "INSURANCE_ID",
        "EMPLOYEE_ID": "ID_NUMBER",
        "POLICE_ID_NUM": "ID_NUMBER",
    },
    "ai4privacy": {
        "FIRSTNAME": "PERSON",
        "LASTNAME": "PERSON",
        "MIDDLENAME": "PERSON",
        "GIVENNAME": "PERSON",
        "GIVENNAME1": "PERSON",
        "GIVENNAME2": "PERSON",
        "SURNAME": "PERSON",
        "LASTNAME1": "PERSON",
        "LASTNAME2": "PERSON",
        "LASTNAME3": "PERSON",
        "FULLNAME": "PERSON",
        "NAME": "PERSON",
        "DOB": "DATE_OF_BIRTH",
        "DATEOFBIRTH": "DATE_OF_BIRTH",
        "BOD": "DATE_OF_BIRTH",
        "EMAIL": "EMAIL_ADDRESS",
        "PHONENUMBER": "PHONE_NUMBER",
        "TELEPHONENUM": "PHONE_NUMBER",
        "TEL": "PHONE_NUMBER",
        "STREET": "STREET_ADDRESS",
        "STREETADDRESS": "STREET_ADDRESS",
        "BUILDINGNUMBER": "STREET_ADDRESS",
        "BUILDINGNUM": "STREET_ADDRESS",
        "SECONDARYADDRESS": "STREET_ADDRESS",
        "CREDITCARDNUMBER": "CREDIT_CARD",
        "CREDITCARDCVV": "CREDIT_CARD",
        "IBAN": "IBAN_CODE",
        "ACCOUNTNUMBER": "BANK_ACCOUNT",
        "ACCOUNTNUM": "BANK_ACCOUNT",
        "BIC": "BANK_ACCOUNT",
        "BITCOINADDRESS": "CRYPTO",
        "ETHEREUMADDRESS": "CRYPTO",
        "LITECOINADDRESS": "CRYPTO",
        "SSN": "US_SSN",
        "SOCIALNUM": "NATIONAL_ID",
        "IDCARD": "NATIONAL_ID",
        "IDCARDNUM": "NATIONAL_ID",
        "PASSPORT": "PASSPORT",
        "PASSPORTNUM": "PASSPORT",
        "DRIVERLICENSE": "DRIVER_LICENSE",
        "DRIVERLICENSENUM": "DRIVER_LICENSE",
        "TAXNUM": "TAX_ID",
        "PASSWORD": "PASSWORD",
        "PIN": "PASSWORD",
        "IP": "IP_ADDRESS",
        "IPV4": "IP_ADDRESS",
        "IPV6": "IP_ADDRESS",
        "MAC": "MAC_ADDRESS",
        "PHONEIMEI": "IMEI",
    },
    "kaggle-tokens": {
        "NAME_STUDENT": "PERSON",
        "EMAIL": "EMAIL_ADDRESS",
        "PHONE_NUM": "PHONE_NUMBER",
        "STREET_ADDRESS": "STREET_ADDRESS",
        "ID_NUM": "ID_NUMBER",
    },
}


@dataclass(frozen=True, slots=True)
class Gold:
    label: str  # the dataset's
    value: str


@dataclass(frozen=True, slots=True)
class Text:
    index: int  # position in the file
    text: str
    gold: tuple[Gold, ...]  # every labelled value found in the text, mapped or not
    unusable: int  # labels whose value is missing or not in the text


def _records(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    raw = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    stripped = raw.lstrip()
    if stripped.startswith("["):
        loaded = json.loads(raw)
        assert isinstance(loaded, list), path
        return loaded
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _spans(text: str, spans: Iterable[tuple[str, int, int, str | None]]) -> tuple[tuple[Gold, ...], int]:
    gold: list[Gold] = []
    unusable = 0
    for label, start, end, value in spans:
        piece = text[start:end]
        if not piece.strip() or (value is not None and piece != value):
            unusable += 1
        else:
            gold.append(Gold(label.upper(), piece))
    return tuple(gold), unusable


def _kaggle_spans(record: dict[str, Any]) -> tuple[str, list[tuple[str, int, int, str | None]]]:
    """The text rebuilt from spaCy tokens and their trailing spaces, with the BIO-tagged spans."""
    parts: list[str] = []
    spans: list[list[Any]] = []
    position = 0
    current: list[Any] | None = None
    for token, space, tag in zip(
        record["tokens"], record["trailing_whitespace"], record["labels"], strict=True
    ):
        if tag == "O" or tag.startswith("B-") or (current and current[0] != tag[2:]):
            current = None
        if tag != "O":
            if current is None:
                current = [tag[2:], position, position]
                spans.append(current)
            current[2] = position + len(token)
        parts.append(token + (" " if space else ""))
        position += len(parts[-1])
    text = "".join(parts)
    return text, [(label, start, end, None) for label, start, end in spans]


def load(path: Path, fmt: str) -> list[Text]:
    texts = []
    for index, record in enumerate(_records(path)):
        if fmt == "presidio-research":
            text = record["full_text"]
            gold, unusable = _spans(
                text,
                [
                    (s["entity_type"], s["start_position"], s["end_position"], s["entity_value"])
                    for s in record["spans"]
                ],
            )
        elif fmt == "ai4privacy":
            text = record["source_text"]
            mask = record["privacy_mask"]
            if isinstance(mask, str):  # the parquet export's numpy-array repr: "[{...}\n {...}]"
                mask = ast.literal_eval(mask.replace("}\n {", "}, {"))
            gold, unusable = _spans(text, [(m["label"], m["start"], m["end"], m["value"]) for m in mask])
        elif fmt == "kaggle-tokens":
            text, spans = _kaggle_spans(record)
            gold, unusable = _spans(text, spans)
        else:  # value-list
            text = record["text"]
            found: list[Gold] = []
            unusable = 0
            for item in record["NER"]:
                value = item.get("entity")
                if isinstance(value, str) and value.strip() and value in text:
                    found.append(Gold(str(item["label"]).upper(), value))
                else:
                    unusable += 1
            gold = tuple(found)
        texts.append(Text(index, text, tuple(gold), unusable))
    return texts


def _context(text: str, value: str) -> str:
    start = text.find(value)
    before = max(0, start - (60 - len(value)) // 2) if len(value) < 60 else start
    snippet = text[before : before + max(60, len(value))]
    return snippet.replace("\n", "⏎")


def _found_on(text: str, findings: tuple[Finding, ...], value: str) -> str:
    """What the gate found over the value's first occurrence: types and whether they cover all of it."""
    start = text.find(value)
    end = start + len(value)
    over = [f for f in findings if f.start < end and f.end > start]
    if not over:
        return "nothing"
    covered = sum(min(f.end, end) - max(f.start, start) for f in over)
    names = ",".join(sorted({f.entity_type for f in over}))
    return f"{names} ({covered}/{len(value)} chars)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", type=Path, help="the dataset file")
    parser.add_argument("--format", required=True, choices=sorted(LABELS), dest="fmt")
    parser.add_argument("--n", type=int, default=200, help="texts in the sample")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=10, help="leaked values listed per entity type")
    parser.add_argument(
        "--rest", action="store_true", help="score the texts outside that sample instead (the untuned slice)"
    )
    args = parser.parse_args()

    mapping = LABELS[args.fmt]
    everything = load(args.path, args.fmt)
    sample = random.Random(args.seed).sample(everything, min(args.n, len(everything)))
    if args.rest:
        chosen = {id(t) for t in sample}
        sample = [t for t in everything if id(t) not in chosen]
    load_edged()
    gate = GATES["edged"]
    classes = {e: c.name for c in gate.settings.classes().values() for e in c.entities}
    policies = {c.name: c.policy.name for c in gate.settings.classes().values()}

    kept: dict[str, list[bool]] = {}
    hidden: dict[str, list[bool]] = {}
    typed: dict[str, list[bool]] = {}
    released_kept: dict[str, list[bool]] = {}
    labels_of: dict[str, Counter[str]] = {}
    leaks: dict[str, list[str]] = {}
    ignored: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    clean: Counter[str] = Counter()
    clean_reasons: Counter[str] = Counter()
    unusable = sum(t.unusable for t in sample)
    for item in sample:
        messages = [Message("user", item.text)]
        verdict = gate.assess(messages)
        policy = "unscanned" if verdict.detector_failed else verdict.policy.name
        if not item.gold and not item.unusable:
            clean[policy] += 1
            if verdict.policy is not DataPolicy.ALLOW:
                clean_reasons[verdict.reasons[0]] += 1
            continue
        scored = [g for g in item.gold if g.label in mapping]
        ignored.update(g.label for g in item.gold if g.label not in mapping)
        if not scored:
            verdicts[f"{policy} (only unmapped labels)"] += 1
            continue
        verdicts[policy] += 1
        sent = released_text(gate, messages, verdict)
        for gold in scored:
            entity = mapping[gold.label]
            stays = gold.value not in sent
            kept.setdefault(entity, []).append(stays)
            labels_of.setdefault(entity, Counter())[gold.label] += 1
            in_class = _of_class(classes, classes.get(entity, "?"))
            typed.setdefault(entity, []).append(_covered_by(messages, verdict.findings, gold.value, in_class))
            hidden.setdefault(entity, []).append(
                not verdict.allows_cloud or _covered_by(messages, verdict.findings, gold.value, bool)
            )
            if verdict.allows_cloud:
                released_kept.setdefault(entity, []).append(stays)
            if not stays:
                found_in = verdict.findings[0] if verdict.findings else ()
                leaks.setdefault(entity, []).append(
                    f"{gold.label} {gold.value!r} [found: {_found_on(item.text, found_in, gold.value)}]"
                    f" ({verdict.policy.name}) … {_context(item.text, gold.value)} …"
                )

    which = "the texts outside the sample of" if args.rest else "sample"
    print(
        f"\n{args.path.name} ({args.fmt}): {len(sample)} of {len(everything)} texts, "
        f"{which} --n {args.n} --seed {args.seed}"
    )
    print(f"Labels whose value is missing or not in its text (not scored): {unusable}")
    print(
        "Verdicts of the texts with mapped labels: "
        + ", ".join(f"{k} {v}" for k, v in verdicts.most_common())
    )
    print("\nMapping (dataset label -> edged type): " + ", ".join(f"{k}->{v}" for k, v in mapping.items()))
    print(
        "Ignored labels (no edged data class), values in the sample: "
        + (", ".join(f"{k} {v}" for k, v in ignored.most_common()) or "none")
    )
    print(
        "\n| edged type | class (policy) | dataset labels | values | kept | hidden | typed "
        "| values in released texts | kept there |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for entity in sorted(kept):
        data_class = classes.get(entity, "?")
        print(
            f"| {entity} | {data_class} ({policies.get(data_class, '?')}) "
            f"| {', '.join(f'{k} {v}' for k, v in labels_of[entity].most_common())} | {len(kept[entity])} "
            f"| {_rate(kept[entity])} | {_rate(hidden[entity])} | {_rate(typed[entity])} "
            f"| {len(released_kept.get(entity, []))} | {_rate(released_kept.get(entity, []))} |"
        )
    flat = [x for k in kept.values() for x in k]
    print(
        f"| **all** | | | {len(flat)} | **{_rate(flat)}** | {_rate([x for h in hidden.values() for x in h])} "
        f"| {_rate([x for t in typed.values() for x in t])} | {sum(len(r) for r in released_kept.values())} "
        f"| {_rate([x for r in released_kept.values() for x in r])} |"
    )
    total_clean = sum(clean.values())
    if total_clean:
        local = clean["LOCAL_ONLY"] + clean["unscanned"]
        print(
            f"\nClean texts (no label at all): {total_clean}; kept local needlessly {local} "
            f"({local / total_clean:.1%}), redacted needlessly {clean['REDACT']} "
            f"({clean['REDACT'] / total_clean:.1%})"
        )
        for reason, count in clean_reasons.most_common(10):
            print(f"  {count}x {reason}")
    else:
        print("\nClean texts (no label at all): none in the sample")
    for entity in sorted(leaks):
        print(f"\nLeaked {entity} ({len(leaks[entity])}; up to {args.examples}):")
        for line in leaks[entity][: args.examples]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
