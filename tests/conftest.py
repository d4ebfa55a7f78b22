"""Shared fixtures: the real parts tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import MosquittoBroker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh anonymous Mosquitto on a free loopback port (set_tcp_nodelay on)."""
    with MosquittoBroker(workdir=tmp_path / "mosquitto") as broker:
        yield broker
