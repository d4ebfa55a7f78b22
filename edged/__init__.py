"""edged: an edge hybrid inference daemon.

On-device apps call it over local gRPC; it answers with quantised small language models on the device and,
when policy allows, escalates over MQTT to cloud_bridge workers that call cloud LLMs.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edged")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
