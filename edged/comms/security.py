"""Credentials and TLS for the MQTT link, read when it starts; a bad file is a ConfigError naming the key."""

from __future__ import annotations

import ssl
from pathlib import Path

from edged.config.broker import BrokerSettings
from edged.config.paths import credentials_dir
from edged.errors import ConfigError

MAX_PASSWORD_BYTES = 4096


def read_password(settings: BrokerSettings, section: str = "broker") -> str | None:
    """The MQTT password from password_file or the systemd credential, or None when neither is set."""
    if settings.password_file is not None:
        return read_secret(settings.password_file, f"{section}.password_file")
    if settings.password_credential is not None:
        directory = credentials_dir()
        key = f"{section}.password_credential"
        if directory is None:
            raise ConfigError(
                section, [(key, settings.password_credential, "$CREDENTIALS_DIRECTORY is not set")]
            )
        return read_secret(directory / settings.password_credential, key)
    return None


def read_secret(path: Path, key: str) -> str:
    try:
        data = path.read_bytes()[: MAX_PASSWORD_BYTES + 1]
    except OSError as exc:
        raise ConfigError(key, [(key, str(path), exc.strerror or str(exc))]) from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError(key, [(key, str(path), f"longer than {MAX_PASSWORD_BYTES} bytes")])
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(key, [(key, str(path), "not UTF-8 text")]) from None
    if not lines or not lines[0]:
        raise ConfigError(key, [(key, str(path), "the file is empty")])
    return lines[0]


def tls_context(settings: BrokerSettings, section: str = "broker") -> ssl.SSLContext | None:
    """A client TLS context for mqtts:// (hostname checked, TLS 1.2 or newer), or None for mqtt://."""
    if not settings.use_tls:
        return None
    ca = settings.tls_ca_file
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(section, [(f"{section}.tls_ca_file", str(ca), str(exc))]) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        try:
            context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
        except (OSError, ssl.SSLError) as exc:
            problem = (f"{section}.tls_cert_file", str(settings.tls_cert_file), str(exc))
            raise ConfigError(section, [problem]) from None
    return context
