"""Runtime: what requests are answered with now — the profile in effect and the parts built from it.

It is built in one place (edged.service.runtime.build_runtime) from the validated config and profile, never
changed after, and replaced whole: a profile change (fleet push, SIGHUP) builds a new one off the event loop
and swaps it into the RuntimeSlot in one reference assignment, or keeps the running one and says why. A
request reads the slot once, at its start, and is answered with that runtime to its end, however long it
runs and whatever is swapped in meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edged.config.profile import DeviceProfile
from edged.config.routing import ScoreWeights
from edged.escalation.cloud_answerer import CloudAnswerer
from edged.routing.budget import CloudBudget
from edged.routing.router import PromptRouter
from edged.sovereignty.audit import AuditLog
from edged.sovereignty.gate import SensitivityGate


@dataclass(frozen=True, slots=True)
class Runtime:
    profile: DeviceProfile
    budget: CloudBudget  # the use so far, under this profile's limits
    stream_interval_s: float = 0.0  # the config's api.stream_interval_ms: how often a stream's tokens go out
    weights: ScoreWeights = field(
        default_factory=ScoreWeights
    )  # the AUTO score's (routing.effective_weights)
    # With a broker only (there is somewhere to route to and something could leave the device):
    router: PromptRouter | None = None
    gate: SensitivityGate | None = None
    audit: AuditLog | None = None
    cloud: CloudAnswerer | None = None  # releases and scans with `gate`, charges `budget`


class RuntimeSlot:
    """The runtime in effect. Read from any thread (the engine's cascade hook, the fleet's); swapped only by the
    daemon's commit of a built runtime, which cannot fail. A swap is one reference assignment: a reader sees
    the old runtime or the new one, whole."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def current(self) -> Runtime:
        return self._runtime

    def swap(self, runtime: Runtime) -> None:
        """Put `runtime` in effect (requests already running keep theirs)."""
        self._runtime = runtime
