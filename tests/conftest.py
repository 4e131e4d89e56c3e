"""Shared test setup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

# The long mode of the fault and property tests: `pytest --long` or MESH_X402_LONG=1.
# CI runs the short one: hypothesis profile "ci" (the default), fewer SIGKILLs.
for _name, _examples in (("ci", 300), ("long", 5000)):
    settings.register_profile(
        _name,
        max_examples=_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _long_mode(config: pytest.Config) -> bool:
    return bool(config.getoption("--long")) or os.environ.get("MESH_X402_LONG") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="fault and property tests in their long mode (more kills, more examples)",
    )


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("long" if _long_mode(config) else "ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _long_mode(config):
        # The long mode's kill loops and example counts run for as long as they need.
        for item in items:
            item.add_marker(pytest.mark.timeout(0))


@pytest.fixture(scope="session")
def long_run(pytestconfig: pytest.Config) -> bool:
    """True in the long mode (`--long` or MESH_X402_LONG=1)."""
    return _long_mode(pytestconfig)


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
