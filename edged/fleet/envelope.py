"""The signed envelope that carries a profile (or a key announcement) from the fleet tool to devices.

Wire form (UTF-8 JSON):

    {"signed": {"format": "edged.fleet/1", "kind": "profile", "version": 7,
                "issued_at": 1760000000, "expires_at": 1762592000, "key_id": "3f9a...",
                "target": {"group": "pi5"}, "profile": {...}},
     "signature": "<base64 Ed25519 signature over canonical_bytes(signed)>"}

`kind = "keys"` carries `"keys": {"add": {KEY_ID: BASE64_RAW_PUBLIC_KEY}, "revoke": [KEY_ID]}` instead of a
profile. Times are integer Unix seconds, so the canonical form never depends on float formatting of the clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged.errors import Rejected, RejectReason
from edged.schema_limits import json_nesting_depth

FORMAT = "edged.fleet/1"
KINDS = ("profile", "keys")
SCOPES = ("group", "device")
MAX_DEPTH = 32  # JSON nesting of an envelope; a profile's config is ~5 levels deep


@dataclass(frozen=True, slots=True)
class Target:
    """Who a message is for: every device of a group, or one device."""

    scope: str  # "group" or "device"
    name: str

    def to_json(self) -> dict[str, str]:
        return {self.scope: self.name}

    def stream(self, kind: str) -> str:
        """The id under which versions of `kind` messages for this target are counted."""
        return f"{kind}:{self.scope}:{self.name}"

    def __str__(self) -> str:
        return f"{self.scope} {self.name}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope whose signature has not necessarily been checked yet (see FleetVerifier)."""

    kind: str
    version: int
    issued_at: int
    expires_at: int
    key_id: str
    target: Target
    body: Mapping[str, Any]  # the profile document, or the key announcement
    signature: bytes
    signed_bytes: bytes  # canonical bytes of the signed part: what the signature covers

    @property
    def stream(self) -> str:
        return self.target.stream(self.kind)


def canonical_bytes(signed: Mapping[str, Any]) -> bytes:
    """The one byte form a signature covers: sorted keys, no whitespace, UTF-8, no NaN or Infinity."""
    return json.dumps(
        signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def signed_document(
    kind: str,
    *,
    version: int,
    issued_at: int,
    expires_at: int,
    key_id: str,
    target: Target,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """The signed part of an envelope, ready for canonical_bytes."""
    return {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "key_id": key_id,
        "target": target.to_json(),
        kind: dict(body),
    }


def encode(signed: Mapping[str, Any], signature: bytes) -> bytes:
    """The wire form of a signed document."""
    return json.dumps(
        {"signed": signed, "signature": base64.b64encode(signature).decode()}, separators=(",", ":")
    ).encode()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def decode(payload: bytes, max_bytes: int) -> Envelope:
    """Parse the wire form; raises Rejected (oversized or malformed) naming the faulty field."""
    if len(payload) > max_bytes:
        raise Rejected(RejectReason.OVERSIZED, f"{len(payload)} bytes is more than the limit of {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(RejectReason.MALFORMED, f"not UTF-8 JSON: {exc}") from None
    depth = json_nesting_depth(text)
    if depth > MAX_DEPTH:  # json.loads would answer a deep document with RecursionError
        raise Rejected(
            RejectReason.MALFORMED, f"the JSON nests {depth} levels deep, the limit is {MAX_DEPTH}"
        )
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise Rejected(RejectReason.MALFORMED, f"not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) != {"signed", "signature"}:
        raise Rejected(RejectReason.MALFORMED, "expected an object with exactly 'signed' and 'signature'")
    signed = document["signed"]
    if not isinstance(signed, dict):
        raise Rejected(RejectReason.MALFORMED, "signed: expected an object")
    return _envelope(signed, _signature(document["signature"]))


def _signature(value: object) -> bytes:
    if not isinstance(value, str):
        raise Rejected(RejectReason.MALFORMED, f"signature: expected base64 text, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise Rejected(RejectReason.MALFORMED, "signature: not valid base64") from None
    if len(raw) != 64:
        raise Rejected(RejectReason.MALFORMED, f"signature: {len(raw)} bytes, an Ed25519 signature has 64")
    return raw


def _envelope(signed: dict[str, Any], signature: bytes) -> Envelope:
    fmt = signed.get("format")
    if fmt != FORMAT:
        raise Rejected(RejectReason.MALFORMED, f"format: {fmt!r} is not {FORMAT!r}")
    kind = signed.get("kind")
    if kind not in KINDS:
        raise Rejected(RejectReason.MALFORMED, f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    expected = {"format", "kind", "version", "issued_at", "expires_at", "key_id", "target", kind}
    if set(signed) != expected:
        extra, missing = sorted(set(signed) - expected), sorted(expected - set(signed))
        raise Rejected(RejectReason.MALFORMED, f"signed: unknown keys {extra}, missing keys {missing}")
    version = _integer(signed, "version", 1)
    issued_at = _integer(signed, "issued_at", 0)
    expires_at = _integer(signed, "expires_at", issued_at + 1)
    key_id = signed["key_id"]
    if not isinstance(key_id, str) or not 1 <= len(key_id) <= 64:
        raise Rejected(RejectReason.MALFORMED, f"key_id: {key_id!r} is not a key id", version)
    body = signed[kind]
    if not isinstance(body, dict):
        raise Rejected(RejectReason.MALFORMED, f"{kind}: expected an object", version)
    try:
        signed_bytes = canonical_bytes(signed)
    except ValueError as exc:
        raise Rejected(RejectReason.MALFORMED, f"signed: {exc}", version) from None
    return Envelope(
        kind, version, issued_at, expires_at, key_id, _target(signed["target"]), body, signature, signed_bytes
    )


MAX_INTEGER = 2**63 - 1


def _integer(signed: Mapping[str, Any], key: str, minimum: int) -> int:
    value = signed[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(RejectReason.MALFORMED, f"{key}: {value!r} is not an integer")
    if not minimum <= value <= MAX_INTEGER:
        raise Rejected(RejectReason.MALFORMED, f"{key}: {value} is outside {minimum}..{MAX_INTEGER}")
    return value


def _target(value: object) -> Target:
    if not isinstance(value, dict) or len(value) != 1:
        raise Rejected(
            RejectReason.MALFORMED, f"target: {value!r} is not {{'group': NAME}} or {{'device': NAME}}"
        )
    ((scope, name),) = value.items()
    if scope not in SCOPES or not isinstance(name, str) or not name:
        raise Rejected(
            RejectReason.MALFORMED, f"target: {value!r} is not {{'group': NAME}} or {{'device': NAME}}"
        )
    return Target(scope, name)
