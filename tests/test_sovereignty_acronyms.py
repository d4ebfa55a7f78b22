"""spaCy's small English model calls acronyms such as "MQTT" a PERSON; the gate drops a lone all-capital word
that only spaCy's NER tagged, and still finds real names (cue recognizers and multi-word names)."""

from __future__ import annotations

from edged.config.privacy import PrivacySettings
from edged.domain import Message
from edged.sovereignty.gate import SensitivityGate


def test_acronyms_are_not_names_but_names_still_are() -> None:
    gate = SensitivityGate.load(PrivacySettings())
    assert dict(gate.assess([Message("user", "What is MQTT?")]).entities) == {}
    assert dict(gate.assess([Message("user", "Is HTTP faster than QUIC?")]).entities) == {}
    assert gate.assess([Message("user", "My name is John Smith.")]).entities["PERSON"] == 1
    assert gate.assess([Message("user", "my name is JOHN")]).entities["PERSON"] == 1
    assert gate.assess([Message("user", "I met Alice and Bob yesterday.")]).entities["PERSON"] == 2
