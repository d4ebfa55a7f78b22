"""Envelope decoding, canonical bytes, the key ring and the durable store, without a broker."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from edged.config import parse_config
from edged.errors import ConfigError, Rejected, RejectReason
from edged.fleet.envelope import Target, canonical_bytes, decode
from edged.fleet.keys import KeyRing, Signer, key_announcement, load_public_key
from edged.fleet.store import FleetStore, StreamState
from edged.fleet.verify import digest, verify
from tests.fleet_support import make_signer

GROUP = Target("group", "pi5")
NOW = 1_800_000_000


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path, "k.key")[0]


def _signed(signer: Signer, version: int = 3, **changes: Any) -> dict[str, Any]:
    payload = signer.sign("profile", version, GROUP, {"name": "p"}, lifetime_s=3600, issued_at=NOW)
    document: dict[str, Any] = json.loads(payload)
    document["signed"].update(changes)
    return document


def _reason(payload: bytes, max_bytes: int = 65536) -> tuple[RejectReason, str]:
    with pytest.raises(Rejected) as caught:
        decode(payload, max_bytes)
    return caught.value.reason, caught.value.detail


def test_canonical_bytes_do_not_depend_on_key_order_or_spacing() -> None:
    one = canonical_bytes({"b": 1, "a": {"y": 0.5, "x": "é"}})
    two = canonical_bytes(json.loads('{ "a": {"x": "é", "y": 0.5}, "b": 1 }'))
    assert one == two == '{"a":{"x":"é","y":0.5},"b":1}'.encode()


def test_a_signed_envelope_round_trips(signer: Signer) -> None:
    envelope = decode(json.dumps(_signed(signer)).encode(), 65536)
    assert (envelope.kind, envelope.version, envelope.target, envelope.key_id) == (
        "profile",
        3,
        GROUP,
        signer.key_id,
    )
    assert (envelope.issued_at, envelope.expires_at, dict(envelope.body)) == (NOW, NOW + 3600, {"name": "p"})
    KeyRing.of(signer.private_key.public_key()).check(envelope)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"version": True}, "version: True is not an integer"),
        ({"version": 0}, "version: 0 is outside 1.."),
        ({"version": "3"}, "version: '3' is not an integer"),
        ({"expires_at": NOW - 1}, "expires_at:"),
        ({"format": "other/1"}, "format: 'other/1'"),
        ({"kind": "firmware"}, "kind: 'firmware'"),
        ({"target": {"group": "a", "device": "b"}}, "target:"),
        ({"target": {"fleet": "a"}}, "target:"),
        ({"extra": 1}, "unknown keys ['extra']"),
        ({"key_id": 7}, "key_id: 7"),
    ],
)
def test_malformed_fields_are_named(signer: Signer, changes: dict[str, Any], fragment: str) -> None:
    reason, detail = _reason(json.dumps(_signed(signer, **changes)).encode())
    assert reason is RejectReason.MALFORMED
    assert fragment in detail


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "exactly 'signed' and 'signature'"),
        (b'{"signed": {}, "signature": "", "x": 1}', "exactly 'signed' and 'signature'"),
        (b'{"signed": {"version": NaN}, "signature": ""}', "NaN is not valid JSON"),
        (b'{"signed": {}, "signature": "not base64!"}', "signature: not valid base64"),
        (b'{"signed": {}, "signature": "AAAA"}', "signature: 3 bytes"),
        # issue 17 (18): 30,000 nested brackets gave a RecursionError, and the device acked nothing
        (b'{"signed": ' + b"[" * 30000 + b"]" * 30000 + b', "signature": ""}', "nests 30001 levels deep"),
        (b"[" * 40 + b"]" * 40, "nests 40 levels deep, the limit is 32"),
    ],
)
def test_undecodable_payloads_are_malformed(payload: bytes, fragment: str) -> None:
    reason, detail = _reason(payload)
    assert reason is RejectReason.MALFORMED
    assert fragment in detail


def test_size_is_checked_before_anything_else() -> None:
    reason, detail = _reason(b"x" * 2000, max_bytes=1024)
    assert (reason, detail) == (RejectReason.OVERSIZED, "2000 bytes is more than the limit of 1024")


def test_verify_orders_rollback_before_expiry_and_ignores_the_same_envelope(
    signer: Signer, tmp_path: Path
) -> None:
    ring = KeyRing.of(signer.private_key.public_key())
    store = FleetStore(tmp_path)
    payload = json.dumps(_signed(signer)).encode()
    envelope = verify(payload, kind="profile", expected=GROUP, ring=ring, last=None, now=NOW, max_bytes=65536)
    assert envelope is not None
    store.record(envelope.stream, 3, digest(envelope), StreamState.APPLIED)
    last = store.stream("profile:group:pi5")
    same = verify(
        payload, kind="profile", expected=GROUP, ring=ring, last=last, now=NOW + 10**6, max_bytes=65536
    )
    assert same is None  # a retained redelivery: no verdict at all, even though it has expired by now
    with pytest.raises(Rejected) as caught:
        verify(
            payload,
            kind="profile",
            expected=Target("group", "x"),
            ring=ring,
            last=None,
            now=NOW,
            max_bytes=65536,
        )
    assert caught.value.reason is RejectReason.WRONG_TARGET


def test_key_announcement_must_keep_a_key_and_match_ids(signer: Signer, tmp_path: Path) -> None:
    other, other_public = make_signer(tmp_path / "o", "o.key")
    ring = KeyRing.of(signer.private_key.public_key())

    def announce(body: dict[str, Any]) -> KeyRing:
        payload = signer.sign("keys", 1, GROUP, body, lifetime_s=3600)
        return ring.announced(decode(payload, 65536))

    rotated = announce(key_announcement([load_public_key(other_public)], [signer.key_id]))
    assert (set(rotated.keys), rotated.revoked) == ({other.key_id}, {signer.key_id})
    rotated.trust(signer.private_key.public_key())  # the configured key at the next start: stays revoked
    assert set(rotated.keys) == {other.key_id}
    with pytest.raises(Rejected, match="would leave no trusted key"):
        announce(key_announcement([], [signer.key_id]))
    raw = base64.b64encode(b"\x01" * 32).decode()
    with pytest.raises(Rejected, match="the key's id is"):
        announce({"add": {"0000000000000000": raw}, "revoke": []})
    with pytest.raises(Rejected, match="expected"):
        announce({"add": [], "revoke": []})


def test_store_survives_a_reload_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FleetStore(tmp_path)
    store.record("profile:group:pi5", 4, "d" * 64, StreamState.APPLYING)
    store.record("profile:group:pi5", 4, "d" * 64, StreamState.APPLIED)
    reloaded = FleetStore(tmp_path)
    record = reloaded.stream("profile:group:pi5")
    assert record is not None
    assert (record.version, record.state) == (4, StreamState.APPLIED)
    assert sorted(p.name for p in (tmp_path / "fleet").iterdir()) == ["versions.json"]
    assert (tmp_path / "fleet" / "versions.json").stat().st_mode & 0o777 == 0o600


def test_a_corrupt_state_file_is_moved_aside_and_the_device_starts(tmp_path: Path) -> None:
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "versions.json").write_text('{"streams": {"x": {"version": ')
    (tmp_path / "fleet" / "applied.json").write_text('{"layers": {"group": {"bogus": 1}}}')
    store = FleetStore(tmp_path)
    assert store.streams() == {}
    assert store.layers() == {}
    names = sorted(p.name.split(".corrupt-")[0] for p in (tmp_path / "fleet").iterdir())
    assert names == ["applied.json", "versions.json"]
    assert all(".corrupt-" in p.name for p in (tmp_path / "fleet").iterdir())


def test_an_issued_at_beyond_the_clock_skew_is_rejected_naming_value_and_limit(signer: Signer) -> None:
    """issue 17 (23): a profile issued ten years ahead was accepted."""
    ring = KeyRing.of(signer.private_key.public_key())
    ten_years = NOW + 10 * 365 * 86_400
    ahead = signer.sign("profile", 3, GROUP, {"name": "p"}, lifetime_s=3600, issued_at=ten_years)
    with pytest.raises(Rejected) as caught:
        verify(ahead, kind="profile", expected=GROUP, ring=ring, last=None, now=NOW, max_bytes=65536)
    assert caught.value.reason is RejectReason.FUTURE_DATED
    assert caught.value.detail == (
        f"issued_at {ten_years} is {ten_years - NOW}s ahead of this device's clock ({NOW}); "
        "fleet.max_clock_skew_s is 86400"
    )
    # within the skew (a device clock a little behind the signer's) it is accepted
    soon = signer.sign("profile", 3, GROUP, {"name": "p"}, lifetime_s=3600, issued_at=NOW + 600)
    assert verify(soon, kind="profile", expected=GROUP, ring=ring, last=None, now=NOW, max_bytes=65536)
    with pytest.raises(Rejected):
        verify(
            soon,
            kind="profile",
            expected=GROUP,
            ring=ring,
            last=None,
            now=NOW,
            max_bytes=65536,
            max_skew_s=60,
        )


def test_the_clock_skew_setting_is_bounded() -> None:
    assert parse_config({"fleet": {"max_clock_skew_s": 0}}).fleet.max_clock_skew_s == 0
    with pytest.raises(ConfigError) as caught:
        parse_config({"fleet": {"max_clock_skew_s": 31 * 86_400}}, "edged.toml")
    ((key, value, reason),) = caught.value.problems
    assert (key, value) == ("fleet.max_clock_skew_s", 31 * 86_400)
    assert "2592000" in reason
