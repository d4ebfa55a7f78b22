"""`edged-fleet`: the fleet manager's tool (cloud side): keys, signing, pushing, rollout status, watching.

    edged-fleet keygen FILE
    edged-fleet sign PROFILE --key FILE (--group G | --device D) --version N [--expires-in 30d] [-o OUT]
    edged-fleet push PROFILE|SIGNED.json --key FILE (--group G | --device D) [--version N] [--wait S]
    edged-fleet rotate --key FILE --new-key FILE (--group G | --device D) [--revoke KEY_ID ...]
    edged-fleet status [--group G] [--json]
    edged-fleet watch [--group G] [--json] [--count N] [--for S]

Broker options (--broker mqtt[s]://HOST:PORT, --username, --password-file or $EDGED_FLEET_PASSWORD, --ca-file,
--cert-file, --cert-key-file, --topic-prefix) come after the command. Exit codes: 0 done, 1 error, 2 usage,
3 `push --wait` ended before every targeted device applied.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edged.comms import ThreadLink
from edged.config.base import config_error
from edged.config.broker import BrokerSettings
from edged.config.loader import load_profile
from edged.errors import CloudUnavailable, ConfigError, Rejected
from edged.fleet.envelope import Target, decode
from edged.fleet.keys import Signer, key_announcement, load_private_key, load_public_key, write_key_pair
from edged.fleet.observer import FleetObserver, Listener
from edged.fleet.rollout import FleetStatus
from edged.fleet.topics import FleetTopics

EXIT_INCOMPLETE = 3
DAY = 86_400
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY}
MAX_LIFETIME_S = 5 * 365 * DAY


def duration(text: str) -> int:
    """'90m', '12h', '30d' or seconds -> seconds, 60 s .. 5 years."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m, 12h or 30d")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 60 <= seconds <= MAX_LIFETIME_S:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 60 s .. {MAX_LIFETIME_S} s (5 years)")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    broker = argparse.ArgumentParser(add_help=False)
    group = broker.add_argument_group("broker")
    group.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT or mqtts://HOST:PORT"
    )
    group.add_argument("--username", help="MQTT user name")
    group.add_argument(
        "--password-file", type=Path, help="file with the MQTT password ($EDGED_FLEET_PASSWORD)"
    )
    group.add_argument("--ca-file", type=Path, help="CA bundle for mqtts (default: the system's)")
    group.add_argument("--cert-file", type=Path, help="client certificate for mqtts")
    group.add_argument("--cert-key-file", type=Path, help="private key of the client certificate")
    group.add_argument("--topic-prefix", default="edged/v1", help="the devices' broker.topic_prefix")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")

    target = argparse.ArgumentParser(add_help=False)
    which = target.add_mutually_exclusive_group(required=True)
    which.add_argument("--group", help="every device of this fleet group")
    which.add_argument("--device", help="this one device (overrides its group's profile key by key)")

    signing = argparse.ArgumentParser(add_help=False)
    signing.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM) to sign with")
    signing.add_argument("--expires-in", type=duration, default=30 * DAY, help="validity (default 30d)")

    parser = argparse.ArgumentParser(
        prog="edged-fleet", description="Sign, push and follow edged device profiles."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keygen = commands.add_parser("keygen", help="create an Ed25519 key pair (FILE and FILE.pub)")
    keygen.add_argument("file", type=Path)
    keygen.set_defaults(func=cmd_keygen)

    sign = commands.add_parser("sign", parents=[target, signing], help="sign a profile (offline) into JSON")
    sign.add_argument("profile", type=Path, help="device profile (TOML)")
    sign.add_argument("--version", type=int, required=True, help="version (above every earlier one)")
    sign.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    sign.set_defaults(func=cmd_sign)

    push = commands.add_parser("push", parents=[target, signing, broker], help="sign and publish a profile")
    push.add_argument("profile", type=Path, help="profile (TOML) to sign, or an envelope from `sign` (.json)")
    push.add_argument("--version", type=int, help="default: one above the highest seen on the broker")
    push.add_argument("--wait", type=float, default=0.0, help="wait up to S seconds for the devices' acks")
    push.set_defaults(func=cmd_push)

    rotate = commands.add_parser(
        "rotate", parents=[target, signing, broker], help="announce a new signing key"
    )
    rotate.add_argument("--new-key", type=Path, required=True, help="public (or private) key file to trust")
    rotate.add_argument("--revoke", action="append", default=[], help="key id to stop trusting (repeatable)")
    rotate.add_argument("--version", type=int, help="default: one above the highest seen on the broker")
    rotate.set_defaults(func=cmd_rotate)

    status = commands.add_parser("status", parents=[broker], help="devices and the latest rollout's counts")
    status.add_argument("--group", help="only this group (and its latest rollout)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    watch = commands.add_parser("watch", parents=[broker], help="print acks, presence, state and telemetry")
    watch.add_argument("--group", help="only devices of this group")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=int, default=0, help="stop after N events (0: until Ctrl-C)")
    watch.add_argument("--for", dest="duration", type=float, default=0.0, help="stop after S seconds")
    watch.set_defaults(func=cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "version", None) is not None and args.version < 1:
        parser.error(f"--version {args.version}: versions start at 1")
    try:
        code: int = args.func(args)
    except (ConfigError, CloudUnavailable, Rejected, OSError) as exc:
        print(f"edged-fleet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


# -- keys and signing ------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    public, kid = write_key_pair(args.file)
    print(f"key id {kid}\nprivate key {args.file} (keep it off the devices)\npublic key {public} (fleet.key)")
    return 0


def _target(args: argparse.Namespace) -> Target:
    return Target("group", args.group) if args.group else Target("device", args.device)


def _profile_body(path: Path) -> dict[str, Any]:
    """The profile as its TOML file says (validated first: a bad profile never leaves the operator's desk)."""
    profile = load_profile(path)
    return profile.model_dump(mode="json", exclude_unset=True)


def cmd_sign(args: argparse.Namespace) -> int:
    signer = Signer(load_private_key(args.key))
    payload = signer.sign(
        "profile", args.version, _target(args), _profile_body(args.profile), lifetime_s=args.expires_in
    )
    if args.output:
        args.output.write_bytes(payload + b"\n")
    else:
        print(payload.decode())
    return 0


# -- broker commands -------------------------------------------------------------------------------


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    """The [broker] schema the daemon uses, from the command line: one URL, TLS and password parser."""
    try:
        return BrokerSettings(
            url=args.broker,
            topic_prefix=args.topic_prefix,
            username=args.username,
            password_file=args.password_file,
            tls_ca_file=args.ca_file,
            tls_cert_file=args.cert_file,
            tls_key_file=args.cert_key_file,
        )
    except ValidationError as exc:
        raise config_error("options", exc, "broker") from None


def _connect(args: argparse.Namespace, listener: Listener | None = None) -> tuple[ThreadLink, FleetObserver]:
    password = os.environ.get("EDGED_FLEET_PASSWORD")  # used when --password-file is not given
    client_id = f"edged-fleet-{uuid.uuid4().hex[:12]}"
    link = ThreadLink.own(broker_settings(args), client_id, password=password)
    topics = FleetTopics(args.topic_prefix)
    observer = FleetObserver(link, topics)
    if listener is not None:
        observer.add_listener(listener)
    link.start()
    try:
        observer.sync(args.timeout)
    except CloudUnavailable:
        link.stop()
        raise
    return link, observer


def cmd_push(args: argparse.Namespace) -> int:
    target = _target(args)
    link, observer = _connect(args)
    try:
        if args.profile.suffix == ".json":
            payload = args.profile.read_bytes().strip()
            envelope = decode(payload, len(payload))
            if envelope.target != target or envelope.kind != "profile":
                print(
                    f"edged-fleet: {args.profile} is a {envelope.kind} for {envelope.target}", file=sys.stderr
                )
                return 1
            version = envelope.version
        else:
            version = args.version or observer.highest_version("profile", target) + 1
        highest = observer.highest_version("profile", target)
        if version <= highest:
            # the retained message would be replaced by one every device rejects, and a device joining later
            # (or one that lost its state) would apply it: a rollback
            print(
                f"edged-fleet: --version {version} is not above version {highest}, the highest {target} reports "
                "or retains; push a higher version",
                file=sys.stderr,
            )
            return 1
        if args.profile.suffix != ".json":
            signer = Signer(load_private_key(args.key))
            body = _profile_body(args.profile)
            payload = signer.sign("profile", version, target, body, lifetime_s=args.expires_in)
        link.publish_and_wait(observer.topics.inbound("profile", target), payload, args.timeout, retain=True)
        print(f"pushed profile version {version} to {target}")
        return _wait_for_acks(observer, target, version, args.wait) if args.wait > 0 else 0
    finally:
        link.stop()


def _wait_for_acks(observer: FleetObserver, target: Target, version: int, wait_s: float) -> int:
    """Wait until every device known to be targeted acked `version`; print the counts."""
    expected = _targeted(observer, target)
    acks = observer.wait_acks("profile", target, version, expected or 1, wait_s)
    counts: dict[str, int] = {}
    for device in sorted(set(acks) | set(expected)):
        ack = acks.get(device)
        outcome = ack.outcome if ack else "pending"
        counts[outcome] = counts.get(outcome, 0) + 1
        if ack and ack.outcome != "applied":
            print(f"  {device}: {ack.outcome} ({ack.reason}) {ack.detail}")
    print("  " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())))
    complete = (
        bool(acks) and all(a.outcome == "applied" for a in acks.values()) and set(expected) <= set(acks)
    )
    return 0 if complete else EXIT_INCOMPLETE


def _targeted(observer: FleetObserver, target: Target) -> set[str]:
    return {target.name} if target.scope == "device" else observer.group_members(target.name)


def cmd_rotate(args: argparse.Namespace) -> int:
    target = _target(args)
    signer = Signer(load_private_key(args.key))
    body = key_announcement([load_public_key(args.new_key)], args.revoke)
    link, observer = _connect(args)
    try:
        version = args.version or observer.highest_version("keys", target) + 1
        payload = signer.sign("keys", version, target, body, lifetime_s=args.expires_in)
        link.publish_and_wait(observer.topics.inbound("keys", target), payload, args.timeout, retain=True)
        added = ", ".join(body["add"])
        print(f"announced key {added} to {target} (version {version}, signed by {signer.key_id})")
        return 0
    finally:
        link.stop()


def cmd_status(args: argparse.Namespace) -> int:
    link, observer = _connect(args)
    try:
        status = observer.status(args.group)
    finally:
        link.stop()
    if args.json:
        print(json.dumps(status.to_json(), indent=1))
    else:
        print(render_status(status, time.time()))
    return 0


def render_status(status: FleetStatus, now: float) -> str:
    header = ("DEVICE", "PRESENCE", "GROUP", "PROFILE", "GROUP V", "DEVICE V", "LAST SEEN", "LATEST ROLLOUT")
    rows = [header]
    for row in status.rows:
        outcome = "" if row.outcome is None else row.outcome + (f" ({row.reason})" if row.reason else "")
        rows.append(
            (
                row.device,
                row.presence,
                row.group or "-",
                row.profile or "-",
                _num(row.group_version),
                _num(row.device_version),
                _ago(row.last_seen, now),
                outcome,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if status.rollout is None:
        lines.append("no rollout on the broker")
    else:
        r = status.rollout
        issued = datetime.fromtimestamp(r.issued_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        counts = ", ".join(f"{name} {n}" for name, n in status.counts.items())
        lines.append(
            f"latest rollout: {r.target} version {r.version} ({r.profile}, issued {issued}): {counts}"
        )
    return "\n".join(lines)


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    seconds = max(0, int(now - when))
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def cmd_watch(args: argparse.Namespace) -> int:
    """Print the retained presence and state of every device, then each event as it arrives."""
    events: list[str] = []
    groups: dict[str, str] = {}

    def show(leaf: str, device: str, document: Any) -> None:
        if leaf == "envelope" or not isinstance(document, dict):
            return
        if isinstance(document.get("group"), str):
            groups[device] = document["group"]
        if args.group and groups.get(device) != args.group:
            return
        line = (
            json.dumps({"event": leaf, "device": device, **document})
            if args.json
            else _describe(leaf, document)
        )
        events.append(line)
        print(line, flush=True)

    link, _ = _connect(args, show)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not (args.count and len(events) >= args.count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    finally:
        link.stop()
    return 0


def _describe(leaf: str, doc: dict[str, Any]) -> str:
    device = doc.get("device", "?")
    if leaf == "ack":
        target = " ".join(f"{k} {v}" for k, v in doc.get("target", {}).items())
        why = f" {doc.get('reason')}: {doc.get('detail')}" if doc.get("reason") else ""
        version, outcome = doc.get("version"), doc.get("outcome")
        return f"ack       {device}: {doc.get('kind')} for {target} version {version} {outcome}{why}"
    if leaf == "status":
        return f"presence  {device}: {doc.get('state')}" + (f" ({doc['cause']})" if doc.get("cause") else "")
    if leaf == "state":
        layers = ", ".join(f"{s} v{layer.get('version')}" for s, layer in doc.get("layers", {}).items())
        return f"state     {device}: profile {doc.get('profile')} ({layers or 'no fleet layers'})"
    data = doc.get("data", {})
    return f"telemetry {device}: " + ", ".join(f"{k}={v}" for k, v in sorted(data.items()))


if __name__ == "__main__":
    sys.exit(main())
