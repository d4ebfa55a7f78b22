"""Ed25519 keys: key files, key ids, the signer (fleet tool side) and the key ring (device side).

A key id is the first 16 hex digits of the sha256 of the raw 32-byte public key. The key ring trusts keys by
id; a key announcement (an envelope of kind "keys", signed by a key the ring already trusts) adds and revokes
keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.errors import ConfigError, Rejected, RejectReason
from edged.fleet.envelope import (
    Envelope,
    Target,
    canonical_bytes,
    encode,
    signed_document,
)

MAX_KEYS = 16


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(data: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(data)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM public key (or the private key it belongs to); a bad file is a ConfigError naming it."""
    data = _read_key_file(path)
    try:
        key: object = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        key = _private_or_none(data)
        key = key.public_key() if isinstance(key, Ed25519PrivateKey) else None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(str(path), [("(key)", str(path), "not an Ed25519 public key in PEM form")])
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = _private_or_none(_read_key_file(path))
    if key is None:
        raise ConfigError(
            str(path), [("(key)", str(path), "not an unencrypted Ed25519 private key in PEM form")]
        )
    return key


def _private_or_none(data: bytes) -> Ed25519PrivateKey | None:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PrivateKey) else None


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", str(path), exc.strerror or str(exc))]) from None
    if len(data) > 16 * 1024:
        raise ConfigError(str(path), [("(file)", len(data), "larger than 16384 bytes: not a key file")])
    return data


def write_key_pair(private_path: Path) -> tuple[Path, str]:
    """Generate a key pair: PRIVATE (mode 0600) and PRIVATE.pub; returns the public file and the key id."""
    private = Ed25519PrivateKey.generate()
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(str(path), [("(file)", str(path), "exists; refusing to overwrite a key")])
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = private.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public_path, key_id(public)


@dataclass(frozen=True)
class Signer:
    """Signs envelopes with one private key (fleet tool side)."""

    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def sign(
        self,
        kind: str,
        version: int,
        target: Target,
        body: Mapping[str, Any],
        *,
        lifetime_s: int,
        issued_at: int | None = None,
    ) -> bytes:
        """The wire form of a signed envelope, valid from `issued_at` (default now) for `lifetime_s`."""
        issued = int(time.time()) if issued_at is None else issued_at
        signed = signed_document(
            kind,
            version=version,
            issued_at=issued,
            expires_at=issued + lifetime_s,
            key_id=self.key_id,
            target=target,
            body=body,
        )
        return encode(signed, self.private_key.sign(canonical_bytes(signed)))


def key_announcement(add: Iterable[Ed25519PublicKey], revoke: Iterable[str] = ()) -> dict[str, Any]:
    """The body of a "keys" envelope: keys to trust from now on and key ids to stop trusting."""
    return {
        "add": {key_id(key): base64.b64encode(raw_public_bytes(key)).decode() for key in add},
        "revoke": sorted(set(revoke)),
    }


@dataclass
class KeyRing:
    """The keys a device trusts, by id, and the ids it revoked (never trusted again, not even from config)."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> KeyRing:
        return cls({key_id(key): key for key in public_keys})

    def trust(self, public_key: Ed25519PublicKey) -> None:
        """Trust a key unless it was revoked (the configured root key goes through here at every start)."""
        kid = key_id(public_key)
        if kid not in self.revoked:
            self.keys[kid] = public_key

    def check(self, envelope: Envelope) -> None:
        """Raise Rejected unless the envelope is signed by a trusted key."""
        public_key = self.keys.get(envelope.key_id)
        if public_key is None:
            raise Rejected(
                RejectReason.UNKNOWN_KEY, f"key_id {envelope.key_id!r} is not trusted", envelope.version
            )
        try:
            public_key.verify(envelope.signature, envelope.signed_bytes)
        except InvalidSignature:
            raise Rejected(
                RejectReason.BAD_SIGNATURE,
                f"signature does not verify with key {envelope.key_id}",
                envelope.version,
            ) from None

    def announced(self, envelope: Envelope) -> KeyRing:
        """The ring after a verified key announcement; raises Rejected (malformed) on a bad body."""
        add, revoke = _announcement(envelope)
        keys = {kid: key for kid, key in {**self.keys, **add}.items() if kid not in revoke}
        if not keys:
            raise Rejected(
                RejectReason.MALFORMED, "keys: the announcement would leave no trusted key", envelope.version
            )
        if len(keys) > MAX_KEYS:
            raise Rejected(
                RejectReason.MALFORMED, f"keys: {len(keys)} keys is more than {MAX_KEYS}", envelope.version
            )
        return KeyRing(keys, (self.revoked - set(add)) | revoke)

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": {
                kid: base64.b64encode(raw_public_bytes(key)).decode()
                for kid, key in sorted(self.keys.items())
            },
            "revoked": sorted(self.revoked),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> KeyRing:
        keys = {kid: public_key_from_raw(base64.b64decode(raw)) for kid, raw in document["keys"].items()}
        return cls(keys, set(document["revoked"]))


def _announcement(envelope: Envelope) -> tuple[dict[str, Ed25519PublicKey], set[str]]:
    body = envelope.body
    if (
        set(body) != {"add", "revoke"}
        or not isinstance(body["add"], dict)
        or not isinstance(body["revoke"], list)
    ):
        raise Rejected(
            RejectReason.MALFORMED, "keys: expected {'add': {ID: KEY}, 'revoke': [ID]}", envelope.version
        )
    add: dict[str, Ed25519PublicKey] = {}
    for kid, text in body["add"].items():
        try:
            key = public_key_from_raw(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise Rejected(
                RejectReason.MALFORMED,
                f"keys.add.{kid}: not a base64 raw Ed25519 public key",
                envelope.version,
            ) from None
        if key_id(key) != kid:
            raise Rejected(
                RejectReason.MALFORMED, f"keys.add.{kid}: the key's id is {key_id(key)}", envelope.version
            )
        add[kid] = key
    revoke = body["revoke"]
    if not all(isinstance(kid, str) for kid in revoke):
        raise Rejected(RejectReason.MALFORMED, "keys.revoke: expected a list of key ids", envelope.version)
    return add, set(revoke)
