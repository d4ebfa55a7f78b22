"""The request path: one request from validated input to answer (docs/architecture.md draws it).

InferencePipeline   gate -> decide -> local or cloud -> judge -> escalate or finish -> record
Runtime             what a request is answered with: the profile in effect and the parts built from it
"""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.pipeline.inference import DEADLINE_PASSED as DEADLINE_PASSED
    from edged.pipeline.inference import InferencePipeline as InferencePipeline
    from edged.pipeline.runtime import Runtime as Runtime
    from edged.pipeline.runtime import RuntimeSlot as RuntimeSlot

EXPORTS = {
    "DEADLINE_PASSED": "inference",
    "InferencePipeline": "inference",
    "Runtime": "runtime",
    "RuntimeSlot": "runtime",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
