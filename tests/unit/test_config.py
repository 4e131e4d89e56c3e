"""node.toml: defaults, and errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_x402.config import NodeConfig, load_config
from mesh_x402.errors import ConfigError

GOOD_ADDRESS = "0x" + "ab" * 20


def write_config(folder: Path, text: str) -> Path:
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    def test_empty_file_is_all_defaults(self, tmp_path):
        """An empty file is a usable config with every default."""
        config = load_config(write_config(tmp_path, ""))
        assert config.model_dump() == NodeConfig().model_dump()
        assert config.gateway.listen == "127.0.0.1:9402"
        assert config.upstream.url == "http://127.0.0.1:9337"
        assert config.chain.token is None

    def test_relative_paths_resolve_against_the_files_folder(self, tmp_path):
        """key_file and state_dir are relative to node.toml, not to the cwd."""
        config = load_config(write_config(tmp_path, '[node]\nkey_file = "keys/k"\n'))
        assert config.key_path == tmp_path / "keys" / "k"
        assert config.state_path == tmp_path / "state"

    def test_absolute_paths_are_kept(self, tmp_path):
        config = load_config(write_config(tmp_path, f'[node]\nstate_dir = "{tmp_path}/s"\n'))
        assert config.state_path == tmp_path / "s"

    def test_values_are_read(self, tmp_path):
        text = (
            f'[chain]\ntoken = "{GOOD_ADDRESS}"\nchain_id = 8453\n'
            '[pricing.models."m1"]\nbase = 7\n'
            '[upstream]\nurl = "http://127.0.0.1:9999/"\n'
        )
        config = load_config(write_config(tmp_path, text))
        assert config.chain.token == GOOD_ADDRESS
        assert config.chain.chain_id == 8453
        assert config.pricing.models["m1"].base == 7
        assert config.upstream.url == "http://127.0.0.1:9999"


class TestErrors:
    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match=r"node\.toml: no such file"):
            load_config(tmp_path / "node.toml")

    def test_not_toml(self, tmp_path):
        path = write_config(tmp_path, "[node\n")
        with pytest.raises(ConfigError, match="not valid TOML") as info:
            load_config(path)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("colour = 1\n", "colour"),
            ("[gateway]\nlisten_on = 'x'\n", "gateway.listen_on"),
            ("[pricing.default]\nbasee = 1\n", "pricing.default.basee"),
            ("path = 'x'\n", "path"),
        ],
    )
    def test_unknown_keys_are_named(self, tmp_path, text, key):
        """A typo is an error naming the file and the dotted key, not a silent default."""
        path = write_config(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        message = str(info.value)
        assert message.startswith(str(path))
        assert f"{key}: unknown key" in message

    @pytest.mark.parametrize("field", ["token", "settlement", "identity_registry"])
    @pytest.mark.parametrize("value", ["0x1234", "ab" * 20, "0x" + "zz" * 20])
    def test_bad_address_is_named(self, tmp_path, field, value):
        path = write_config(tmp_path, f'[chain]\n{field} = "{value}"\n')
        with pytest.raises(ConfigError) as info:
            load_config(path)
        message = str(info.value)
        assert f"chain.{field}" in message
        assert "not a 0x-prefixed 20-byte hex address" in message
        assert value in message

    @pytest.mark.parametrize("listen", ["9402", "127.0.0.1:http", "127.0.0.1:70000", ":1"])
    def test_bad_gateway_listen(self, tmp_path, listen):
        with pytest.raises(ConfigError, match=r"gateway\.listen"):
            load_config(write_config(tmp_path, f'[gateway]\nlisten = "{listen}"\n'))

    def test_negative_price(self, tmp_path):
        with pytest.raises(ConfigError, match=r"pricing\.default\.base: .*greater than or equal"):
            load_config(write_config(tmp_path, "[pricing.default]\nbase = -1\n"))

    def test_bad_upstream_url(self, tmp_path):
        with pytest.raises(ConfigError, match=r"upstream\.url: .*http://"):
            load_config(write_config(tmp_path, '[upstream]\nurl = "ftp://x"\n'))

    def test_wrong_type(self, tmp_path):
        with pytest.raises(ConfigError, match=r"chain\.chain_id"):
            load_config(write_config(tmp_path, '[chain]\nchain_id = "one"\n'))

    def test_every_problem_is_reported_at_once(self, tmp_path):
        """Two bad keys: both named in one message, so one edit fixes both."""
        path = write_config(tmp_path, "[chain]\nchain_id = 0\n[settlement]\nmode = 'now'\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert "chain.chain_id" in str(info.value)
        assert "settlement.mode" in str(info.value)
