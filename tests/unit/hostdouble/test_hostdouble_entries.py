"""config.toml `[[plugin]]` entries, read as each generation reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_x402.commands.init import plugin_entry
from mesh_x402.hostdouble.entries import EntryError, host_config, load_plugin_entries

GOOD = """
version = 1

[[plugin]]
name = "x402"
command = "/usr/bin/mesh-x402"
args = ["serve", "--config", "/srv/node.toml"]
enabled = true
"""


class TestGoodEntries:
    @pytest.mark.parametrize("generation", ["0.76", "0.66"])
    def test_init_style_entry_loads(self, generation: str) -> None:
        """name, command, args, enabled: loads on both generations with default timeouts."""
        (entry,) = load_plugin_entries(GOOD, generation)  # type: ignore[arg-type]
        assert entry.name == "x402"
        assert entry.command == "/usr/bin/mesh-x402"
        assert entry.args == ("serve", "--config", "/srv/node.toml")
        assert entry.enabled
        assert (entry.connect_timeout, entry.init_timeout) == (10.0, 30.0)

    def test_startup_table_on_076(self) -> None:
        """0.76 takes [plugin.startup] timeouts; the HostConfig built from it uses them."""
        text = GOOD + "[plugin.startup]\nconnect_timeout_secs = 3\ninit_timeout_secs = 7\n"
        (entry,) = load_plugin_entries(text)
        config = host_config(entry, health_interval=1.0)
        assert config.command == ["/usr/bin/mesh-x402", "serve", "--config", "/srv/node.toml"]
        assert (config.connect_timeout, config.init_timeout) == (3.0, 7.0)
        assert config.plugin_name == "x402"
        assert config.health_interval == 1.0

    def test_066_ignores_unknown_keys(self) -> None:
        """0.66 is lenient about keys it does not know."""
        (entry,) = load_plugin_entries(GOOD + 'color = "blue"\n', "0.66")
        assert entry.name == "x402"


class TestFatalEntries:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("version = 2\n" + GOOD.replace("version = 1\n", ""), "version must be 1"),
            (GOOD + 'color = "blue"\n', "unknown key 'color'"),
            (GOOD + "[plugin.settings]\nprice = 1\n", "settings"),
            (GOOD + "[plugin.startup]\nconnect_timeout_secs = 0\n", "connect_timeout_secs"),
            (GOOD + "[plugin.startup]\nwarmup = 1\n", "startup.warmup"),
            (GOOD + GOOD.replace("version = 1\n", ""), "more than once"),
            ('[[plugin]]\nname = "x402"\n', "no `command`"),
            ('[[plugin]]\nname = "blobstore"\ncommand = "x"\n', "reserved"),
            ('[[plugin]]\ncommand = "x"\n', "`name`"),
            ('[[plugin]]\nname = "x"\ncommand = "x"\nargs = "serve"\n', "`args`"),
            ('[[plugin]]\nname = "x"\ncommand = "x"\nenabled = "yes"\n', "`enabled`"),
            ('plugin = "x402"\n', "array of tables"),
            ("[[plugin]\n", "not TOML"),
        ],
    )
    def test_076_stops(self, text: str, message: str) -> None:
        """Each of these stops a 0.76 node; the error names the entry and the key."""
        with pytest.raises(EntryError, match=message):
            load_plugin_entries(text)

    def test_066_reserved_ids(self) -> None:
        """0.66 reserves blackboard (a built-in there); 0.76 does not."""
        text = '[[plugin]]\nname = "blackboard"\ncommand = "x"\n'
        with pytest.raises(EntryError, match=r"reserved on a 0\.66 host"):
            load_plugin_entries(text, "0.66")
        assert load_plugin_entries(text)[0].name == "blackboard"


@pytest.mark.parametrize("generation", ["0.76", "0.66"])
def test_the_entry_init_prints_loads(tmp_path: Path, generation: str) -> None:
    """The `[[plugin]]` entry `mesh-x402 init` prints is accepted by both generations."""
    text = "version = 1\n\n" + plugin_entry(tmp_path / "node.toml")
    (entry,) = load_plugin_entries(text, generation)  # type: ignore[arg-type]
    assert entry.name == "x402"
    assert entry.args[-3:] == ("serve", "--config", str(tmp_path / "node.toml"))
