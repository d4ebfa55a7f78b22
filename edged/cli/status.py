"""`edged status [--json]`: what the running daemon is doing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from edged.cli.client import add_connection_args, describe_error, open_client
from edged.errors import EdgedError
from edged.v1 import inference_pb2 as pb


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("status", help="show the running daemon's status")
    add_connection_args(parser)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        with open_client(args) as edged:
            status = edged.status(timeout=min(args.timeout, 10.0))
    except EdgedError as exc:
        print(describe_error(exc), file=sys.stderr)
        return 1
    if args.json:
        fields = MessageToDict(
            status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        print(json.dumps(_int64_as_numbers(status, fields), indent=2))
    else:
        print(render(status))
    return 0


def render(s: pb.StatusResponse) -> str:
    lines = [
        f"edged {s.version} on {s.device_id}: {s.state}, up {s.uptime_s:.0f}s",
        f"slots: {s.slots_busy} busy, {s.slots_free} free; queue {s.queue_depth}",
        f"answered: {s.requests_local} local, {s.requests_cloud} cloud",
        f"profile: {s.profile.name} (version {s.profile.version}, {s.profile.origin or 'local'})",
        f"cloud link: {s.link.state}"
        + (f" to {s.link.broker}, rtt {s.link.rtt_ms:.2f} ms" if s.link.broker else "")
        + (f", last error: {s.link.last_error}" if s.link.last_error else ""),
    ]
    lines.append("http api: " + (", ".join(s.http_listeners) if s.http_listeners else "off"))
    if s.HasField("load"):
        load = s.load
        extra = [
            f"cpu {load.cpu_percent:.0f}% others, {load.edged_cpu_percent:.0f}% edged",
            f"load {load.load_average_1m:.2f}",
        ]
        extra.append(f"mem avail {load.memory_available_mb:.0f} MB")
        if load.HasField("temperature_c"):
            extra.append(f"{load.temperature_c:.0f} C")
        if load.HasField("battery_percent"):
            extra.append(f"battery {load.battery_percent:.0f}%")
        over = f" (over: {', '.join(load.over_limits)})" if load.over_limits else ""
        lines.append("load: " + ", ".join(extra) + over)
    b = s.budget
    limited = (
        b.requests_per_hour_limit
        or b.requests_per_day_limit
        or b.tokens_per_hour_limit
        or b.tokens_per_day_limit
    )
    lines.append(
        f"cloud budget: {b.requests_this_hour}/{b.requests_per_hour_limit or '-'} req/h, "
        f"{b.tokens_today}/{b.tokens_per_day_limit or '-'} tok/day"
        + (" (exhausted)" if b.exhausted else "")
        + ("" if limited else " (no limit set)")
    )
    lines.append("models:")
    for m in s.models:
        mark = "*" if m.is_default else " "
        state = (
            f"loaded, {m.slots_busy}/{m.slots_total} slots x {m.context_per_slot} tokens"
            if m.loaded
            else "not loaded"
        )
        lines.append(f" {mark} {m.id} ({m.quantization}, ctx {m.context_length}): {state}")
    return "\n".join(lines)


_INT64 = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64)


def _int64_as_numbers(message: Message, fields: dict[str, Any]) -> dict[str, Any]:
    """protobuf's JSON writes 64-bit integers as strings (JavaScript's doubles cannot hold them all); the
    status' counts fit, and a script reads them as numbers, like the 32-bit ones beside them."""
    for field in message.DESCRIPTOR.fields:
        value = fields.get(field.name)
        if value is None:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            _int64_as_numbers(getattr(message, field.name), value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item, item_fields in zip(getattr(message, field.name), value, strict=True):
                _int64_as_numbers(item, item_fields)
        elif field.type in _INT64:
            fields[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return fields
