"""Shared test setup."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A command run in-process (`log.configure`) must not change logging for later tests.

    Its config is undone after the test, and it may not cache loggers: a cached
    logger keeps its processors for good, so `capture_logs` in a later test
    would see nothing from that module.
    """
    saved = structlog.get_config()
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", uncached)
    yield
    configure(**saved)
