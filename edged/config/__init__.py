"""Configuration: one validated model per document (DaemonConfig, DeviceProfile), one module per section."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.config.api import ApiSettings as ApiSettings
    from edged.config.api import parse_host_port as parse_host_port
    from edged.config.base import StrictModel as StrictModel
    from edged.config.base import config_error as config_error
    from edged.config.broker import BrokerSettings as BrokerSettings
    from edged.config.budget import BudgetSettings as BudgetSettings
    from edged.config.daemon import DaemonConfig as DaemonConfig
    from edged.config.engine import EngineSettings as EngineSettings
    from edged.config.escalation import EscalationSettings as EscalationSettings
    from edged.config.fleet import DAY_S as DAY_S
    from edged.config.fleet import FleetSettings as FleetSettings
    from edged.config.http import HttpSettings as HttpSettings
    from edged.config.limits import LoadLimits as LoadLimits
    from edged.config.loader import effective_profile as effective_profile
    from edged.config.loader import load_config as load_config
    from edged.config.loader import load_profile as load_profile
    from edged.config.loader import parse_config as parse_config
    from edged.config.loader import parse_profile as parse_profile
    from edged.config.loader import read_toml as read_toml
    from edged.config.metrics import MetricsSettings as MetricsSettings
    from edged.config.paths import credentials_dir as credentials_dir
    from edged.config.paths import default_socket_path as default_socket_path
    from edged.config.paths import default_state_dir as default_state_dir
    from edged.config.privacy import SENSITIVE_CLASS as SENSITIVE_CLASS
    from edged.config.privacy import AuditSettings as AuditSettings
    from edged.config.privacy import CustomRecognizer as CustomRecognizer
    from edged.config.privacy import DataPolicy as DataPolicy
    from edged.config.privacy import DetectorSettings as DetectorSettings
    from edged.config.privacy import PrivacySettings as PrivacySettings
    from edged.config.profile import DeviceProfile as DeviceProfile
    from edged.config.profile import deep_merge as deep_merge
    from edged.config.routing import RoutingSettings as RoutingSettings
    from edged.config.routing import ScoreWeights as ScoreWeights

EXPORTS = {
    "ApiSettings": "api",
    "AuditSettings": "privacy",
    "BrokerSettings": "broker",
    "BudgetSettings": "budget",
    "config_error": "base",
    "credentials_dir": "paths",
    "CustomRecognizer": "privacy",
    "DaemonConfig": "daemon",
    "DataPolicy": "privacy",
    "DAY_S": "fleet",
    "deep_merge": "profile",
    "default_socket_path": "paths",
    "default_state_dir": "paths",
    "DetectorSettings": "privacy",
    "DeviceProfile": "profile",
    "effective_profile": "loader",
    "EngineSettings": "engine",
    "EscalationSettings": "escalation",
    "FleetSettings": "fleet",
    "HttpSettings": "http",
    "load_config": "loader",
    "load_profile": "loader",
    "LoadLimits": "limits",
    "MetricsSettings": "metrics",
    "parse_config": "loader",
    "parse_host_port": "api",
    "parse_profile": "loader",
    "PrivacySettings": "privacy",
    "read_toml": "loader",
    "RoutingSettings": "routing",
    "ScoreWeights": "routing",
    "SENSITIVE_CLASS": "privacy",
    "StrictModel": "base",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
