"""edged's domain errors: the one hierarchy every layer raises.

    EdgedError
     ├── InvalidRequest        a request field is out of bounds           -> INVALID_ARGUMENT
     │    └── CloudRefused          a cloud_bridge worker refused a field
     ├── ModelNotFound         unknown model id                           -> NOT_FOUND
     ├── LimitReached          (a base: a limit refused the request)      -> RESOURCE_EXHAUSTED
     │    ├── Overloaded            slots and queue full
     │    └── BudgetExhausted       the cloud budget is spent
     ├── DeadlineExceeded      the caller's deadline passed               -> DEADLINE_EXCEEDED
     ├── Cancelled             the caller went away                       -> CANCELLED
     ├── NoCloudLink           a cloud mode with no broker configured     -> FAILED_PRECONDITION
     ├── Unavailable           (a base: cannot answer now, retry later)   -> UNAVAILABLE
     │    ├── CloudUnavailable      the link or the workers cannot answer now
     │    ├── ShuttingDown          the daemon is draining
     │    └── NotReady              the model is still loading
     ├── SensitiveDataBlocked  policy keeps this data on the device       -> PERMISSION_DENIED
     ├── ConfigError           a config file or profile is invalid        (CLI: exit 1)
     ├── SubscriptionRefused   the broker refused a SUBSCRIBE (its ACL)   (daemon, worker: start fails)
     ├── ModelError            a model cannot be located, verified, loaded
     │    ├── ModelIntegrityError  sha256 mismatch
     │    └── BackendCrashed       the decode self-test's child process crashed (daemon: exit 78, no restart)
     ├── EngineError           the local runtime failed                   -> INTERNAL
     ├── Rejected              a fleet message refused (its RejectReason) (fleet: acked, never raised out)
     └── DetectorFault         the PII detector's result is not trusted   (gate: the request stays local)

Library errors (llama.cpp, paho, onnxruntime, presidio) are caught where they enter edged and re-raised as one of
these; the gRPC layer translates them to status codes in exactly one place (edged.api.error_map), where the HTTP
statuses and the errors edged.client raises for a status are derived from the same map.
"""

from __future__ import annotations

from enum import StrEnum


class EdgedError(Exception):
    """Base of every error edged raises on purpose."""


class InvalidRequest(EdgedError):
    """A request field is missing, malformed or out of bounds; the message names the field, value and limit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CloudRefused(InvalidRequest):
    """A cloud_bridge worker refused the request as invalid (e.g. max_tokens over its max_tokens_cap).

    An InvalidRequest, so CLOUD_ONLY callers get INVALID_ARGUMENT naming the field; but the request passed the
    device's own checks, so a mode that may answer on the device falls back to it."""


class ModelNotFound(EdgedError):
    """The request names a model this device does not have."""


class LimitReached(EdgedError):
    """A limit refused the request (what edged.client raises for RESOURCE_EXHAUSTED)."""


class Unavailable(EdgedError):
    """edged or the cloud cannot answer now; retrying later may succeed (edged.client's UNAVAILABLE)."""


class Overloaded(LimitReached):
    """All slots are busy and the wait queue is full."""


class BudgetExhausted(LimitReached):
    """The device's cloud budget for the current window is spent."""


class DeadlineExceeded(EdgedError):
    """The caller's deadline passed before the answer was complete."""


class Cancelled(EdgedError):
    """The caller cancelled or disconnected."""


class NoCloudLink(EdgedError):
    """A cloud mode was requested but no broker is configured."""


class CloudUnavailable(Unavailable):
    """The cloud cannot answer now: link down, no worker, or the deadline would pass."""


class SensitiveDataBlocked(EdgedError):
    """The privacy policy keeps this request's data on the device."""

    def __init__(self, data_class: str, message: str) -> None:
        super().__init__(message)
        self.data_class = data_class


class ShuttingDown(Unavailable):
    """The daemon is draining and accepts no new work."""


class NotReady(Unavailable):
    """The daemon is still loading its model."""


class ConfigError(EdgedError):
    """A config file or profile is invalid; `problems` lists (key, value, reason) for each fault."""

    def __init__(self, source: str, problems: list[tuple[str, object, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key} = {value!r}: {reason}" for key, value, reason in problems]
        super().__init__("\n".join(lines) if lines else source)


class SubscriptionRefused(EdgedError):
    """The broker answered a SUBSCRIBE with a failure reason code (>= 0x80), e.g. its ACL denies the topic."""

    def __init__(self, broker: str, topic_filter: str, reason: str, code: int) -> None:
        super().__init__(
            f"MQTT broker {broker} refused the subscription to {topic_filter!r}: {reason} (reason code "
            f"0x{code:02x}); check the broker's ACL for this client's user and broker.topic_prefix"
        )
        self.topic_filter = topic_filter
        self.reason = reason
        self.code = code


class ModelError(EdgedError):
    """A model cannot be located, verified or loaded."""


class ModelIntegrityError(ModelError):
    """The model file's sha256 does not match its manifest."""


class BackendCrashed(ModelError):
    """The native backend crashed (or would) decoding in a child process: a build that cannot run on this CPU.

    Restarting cannot help, so the daemon exits with EXIT_CODE, which its systemd unit does not restart on."""

    EXIT_CODE = 78  # EX_CONFIG (sysexits.h): the installation, not the request, is at fault


class EngineError(EdgedError):
    """The local runtime failed; the daemon treats this as a dead backend."""


class RejectReason(StrEnum):
    """Why a device refused a message; sent in acks as the machine-readable `reason`."""

    OVERSIZED = "oversized"  # more bytes than fleet.max_envelope_bytes
    MALFORMED = "malformed"  # not JSON, or not an envelope of this format
    WRONG_TARGET = "wrong_target"  # signed for another group or device than the topic it came on
    UNKNOWN_KEY = "unknown_key"  # signed with a key id this device does not trust
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify with the trusted key
    ROLLBACK = "rollback"  # version not above the highest one already applied for its target
    EXPIRED = "expired"  # expires_at is in the past (freeze protection)
    # issued_at is further ahead of the device clock than fleet.max_clock_skew_s
    FUTURE_DATED = "future_dated"
    INVALID_PROFILE = "invalid_profile"  # the profile (alone or merged) fails the profile schema
    ROTATION_DISABLED = "rotation_disabled"  # a key announcement while fleet.key_rotation is false


class Rejected(EdgedError):
    """A fleet message was refused; `reason` is machine-readable, `detail` says which field and why.

    Raised and caught inside edged.fleet only: the device reports it in an ack and carries on.
    """

    def __init__(self, reason: RejectReason, detail: str, version: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.version = version


class DetectorFault(EdgedError):
    """The PII detector returned something the gate cannot trust (the request stays on the device).

    Raised and caught inside the privacy gate: it fails closed and reports it in the verdict's reasons.
    """
