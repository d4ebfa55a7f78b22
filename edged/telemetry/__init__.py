"""Observability: Prometheus metrics (metrics.py) and journald-friendly logging (logging.py)."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.telemetry.logging import configure_logging as configure_logging
    from edged.telemetry.logging import set_level as set_level
    from edged.telemetry.metrics import EdgedMetrics as EdgedMetrics
    from edged.telemetry.metrics import MetricsEndpoint as MetricsEndpoint
    from edged.telemetry.metrics import label_code as label_code
    from edged.telemetry.metrics import outcome_of as outcome_of

EXPORTS = {
    "configure_logging": "logging",
    "EdgedMetrics": "metrics",
    "label_code": "metrics",
    "MetricsEndpoint": "metrics",
    "outcome_of": "metrics",
    "set_level": "logging",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
