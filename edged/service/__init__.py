"""Service lifecycle: running under systemd (readiness, watchdog, reload and stop notifications)."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.service.apply import start_engine as start_engine
    from edged.service.daemon import Daemon as Daemon
    from edged.service.sdnotify import ServiceNotifier as ServiceNotifier
    from edged.service.snapshot import DaemonStatus as DaemonStatus

EXPORTS = {
    "Daemon": "daemon",
    "DaemonStatus": "snapshot",
    "ServiceNotifier": "sdnotify",
    "start_engine": "apply",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
