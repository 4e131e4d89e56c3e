"""Store archive naming: mesh-llm's target table, name rule and asset name."""

from __future__ import annotations

import pytest
from mesh_x402.store_archive import ArchiveError, archive_name, target_triple, validate_name


@pytest.mark.parametrize(
    ("system", "machine", "triple"),
    [
        ("Linux", "x86_64", "x86_64-unknown-linux-gnu"),
        ("Linux", "aarch64", "aarch64-unknown-linux-gnu"),
        ("Darwin", "arm64", "aarch64-apple-darwin"),
        ("Darwin", "x86_64", "x86_64-apple-darwin"),
    ],
)
def test_triple_from_os_and_cpu(system: str, machine: str, triple: str) -> None:
    assert target_triple(system, machine) == triple


@pytest.mark.parametrize(
    ("system", "machine", "reason"),
    [
        ("Windows", "AMD64", "exe"),  # a script launcher cannot serve Windows
        ("Linux", "armv7l", "no plugin target"),  # 32-bit ARM cannot install at all
        ("FreeBSD", "amd64", "no plugin target"),
    ],
)
def test_platforms_the_host_cannot_run_are_refused(system: str, machine: str, reason: str) -> None:
    with pytest.raises(ArchiveError, match=reason):
        target_triple(system, machine)


def test_names() -> None:
    for good in ("x402", "X402_pay.node-2"):
        assert validate_name(good) == good
    for bad in ("", "a b", "a/b", "ü", "blobstore", ".", ".."):
        with pytest.raises(ArchiveError):
            validate_name(bad)
    assert archive_name("x402", "v0.1.0", "x86_64-unknown-linux-gnu") == (
        "x402-0.1.0-x86_64-unknown-linux-gnu.tar.gz"
    )
