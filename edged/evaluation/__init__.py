"""Evaluation of local answers and routing: eval items and graders, metrics (APGR, skill, AUROC, cloud share
at 95%), the runner behind `edged eval`, and the calibration behind `edged calibrate`. See docs/routing.md."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.evaluation.calibration import calibrate as calibrate
    from edged.evaluation.calibration import profile_routing as profile_routing
    from edged.evaluation.calibration import write_profile as write_profile
    from edged.evaluation.cloud import LiveCloud as LiveCloud
    from edged.evaluation.engine import EngineAnswerer as EngineAnswerer
    from edged.evaluation.graders import named_options as named_options
    from edged.evaluation.graders import normalise as normalise
    from edged.evaluation.items import EvalItem as EvalItem
    from edged.evaluation.items import load_items as load_items
    from edged.evaluation.runner import ItemResult as ItemResult
    from edged.evaluation.runner import ReferenceCloud as ReferenceCloud
    from edged.evaluation.runner import report as report
    from edged.evaluation.runner import run_items as run_items
    from edged.evaluation.setup import EvalSetup as EvalSetup
    from edged.evaluation.setup import load_setup as load_setup

EXPORTS = {
    "calibrate": "calibration",
    "EngineAnswerer": "engine",
    "EvalItem": "items",
    "EvalSetup": "setup",
    "ItemResult": "runner",
    "LiveCloud": "cloud",
    "load_items": "items",
    "load_setup": "setup",
    "named_options": "graders",
    "normalise": "graders",
    "profile_routing": "calibration",
    "ReferenceCloud": "runner",
    "report": "runner",
    "run_items": "runner",
    "write_profile": "calibration",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
