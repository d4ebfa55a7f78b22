"""The local gRPC API: listeners, the Inference servicer, proto <-> domain conversion, and the one error map."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.api.convert import RequestLimits as RequestLimits
    from edged.api.convert import decode_answer as decode_answer
    from edged.api.convert import encode_answer as encode_answer
    from edged.api.error_map import error_from_status as error_from_status
    from edged.api.error_map import status_code as status_code
    from edged.api.http import HttpApi as HttpApi
    from edged.api.server import ApiServer as ApiServer
    from edged.api.servicer import InferenceServicer as InferenceServicer

EXPORTS = {
    "ApiServer": "server",
    "decode_answer": "convert",
    "encode_answer": "convert",
    "error_from_status": "error_map",
    "HttpApi": "http",
    "InferenceServicer": "servicer",
    "RequestLimits": "convert",
    "status_code": "error_map",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
