"""Configuration: one validated model per document (DaemonConfig, DeviceProfile), one module per section."""

from edged.config.daemon import DaemonConfig
from edged.config.loader import effective_profile, load_config, load_profile, parse_config, parse_profile
from edged.config.profile import DeviceProfile

__all__ = [
    "DaemonConfig",
    "DeviceProfile",
    "effective_profile",
    "load_config",
    "load_profile",
    "parse_config",
    "parse_profile",
]
