"""Node state files: the recorded agent identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mesh_x402.errors import ConfigError
from mesh_x402.state import IDENTITY_FILE, IdentityState, load_identity, save_identity

REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


class TestIdentity:
    def test_missing_means_not_registered(self, tmp_path: Path) -> None:
        assert load_identity(tmp_path) is None

    def test_round_trip_camel_case(self, tmp_path: Path) -> None:
        """The file is camelCase JSON, written in one piece, and reads back equal."""
        identity = IdentityState(agent_id=0, chain_id=31337, identity_registry=REGISTRY)
        save_identity(tmp_path / "state", identity)
        path = tmp_path / "state" / IDENTITY_FILE
        assert json.loads(path.read_text()) == {
            "agentId": 0,
            "chainId": 31337,
            "identityRegistry": REGISTRY,
        }
        assert load_identity(tmp_path / "state") == identity
        assert [p.name for p in path.parent.iterdir()] == [IDENTITY_FILE]

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("{", "Invalid JSON"),
            ('{"agentId": -1, "chainId": 1, "identityRegistry": "' + REGISTRY + '"}', "agentId"),
            ('{"agentId": 1, "chainId": 1, "identityRegistry": "0x12"}', "identityRegistry"),
        ],
    )
    def test_malformed_file_names_itself(self, tmp_path: Path, content: str, message: str) -> None:
        (tmp_path / IDENTITY_FILE).write_text(content)
        with pytest.raises(ConfigError, match=message) as info:
            load_identity(tmp_path)
        assert str(info.value).startswith(str(tmp_path / IDENTITY_FILE))
