"""The store archive against every rule of mesh-llm 0.76's installer, then run as it runs it.

The rules come from /work/shared/spec/meshllm-plugin-store.md (§2 layout,
§3 names, §2.3 config_schema, §8.2 web UI validation, §9 script plugins).
The web UI checker below re-implements §8.2 from the sheet, independently of
the builder, so a package that would be marked `invalid` fails here.
The archive is then unpacked the way the host does (tar, modes kept) and
its launcher started by the host double with no args and no cwd of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_x402 import __version__
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import deploy
from mesh_x402.hostdouble import Host, HostConfig
from mesh_x402.keys import create_key_file
from test_gate_hosted import _write_node as write_gate_node

pytestmark = pytest.mark.integration

_TRIPLES = {
    ("Linux", "x86_64"): "x86_64-unknown-linux-gnu",
    ("Linux", "aarch64"): "aarch64-unknown-linux-gnu",
    ("Darwin", "arm64"): "aarch64-apple-darwin",
    ("Darwin", "x86_64"): "x86_64-apple-darwin",
}
_KINDS = {"boolean", "integer", "float", "string", "path", "url", "enum", "array", "object"}
_APPLY = {"static_on_load", "dynamic_validation_only", "dynamic_apply"}
_RESTART = {"none", "model_reload", "process_restart", "mesh_restart", "plugin_process"}
_VISIBILITY = {"user", "advanced", "hidden", "internal"}
_CONSTRAINTS = {"non_empty", "positive", "range", "allowed_values", "requires"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _node(folder: Path) -> Path:
    """A node folder whose chain cannot be reached: the plugin must still start."""
    folder.mkdir(parents=True)
    create_key_file(folder / "node.key")
    config = folder / "node.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:0"\n\n[chain]\nrpc = "http://127.0.0.1:{_closed_port()}"\n',
        encoding="utf-8",
    )
    return config


def _build(out: Path, name: str, config: Path | None) -> Path:
    args = [sys.executable, "-m", "mesh_x402", "plugin-install", "--archive-only"]
    args += ["--out", str(out), "--name", name]
    if config is not None:
        args += ["--config", str(config)]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    archives = list(out.glob("*.tar.gz"))
    assert len(archives) == 1
    assert f"mesh-llm plugins install --archive {archives[0]} --name {name}" in done.stdout
    return archives[0]


def _relative_ok(path: Any) -> bool:
    """§8.2: non-empty, relative, not `.`, no `..`, not a URL or `//`."""
    if not isinstance(path, str) or not path or path == ".":
        return False
    if path.startswith(("/", "\\", "//", "http://", "https://")):
        return False
    return ".." not in Path(path).parts


def _web_ui_problems(root: Path, web_ui: dict[str, Any]) -> list[str]:
    """The host's install-time web UI validation (§8.2), as a list of failures."""
    problems = []
    bundles = web_ui.get("bundles", [])
    if len(bundles) != 1:
        return ["web UI v1 requires exactly one bundle root"]
    bundle = bundles[0]
    if not bundle.get("id"):
        problems.append("bundle id empty")
    root_path = bundle.get("root_path")
    if not _relative_ok(root_path):
        return [*problems, f"bad root_path {root_path!r}"]
    bundle_dir = (root / root_path).resolve()
    if not bundle_dir.is_dir() or not bundle_dir.is_relative_to(root.resolve()):
        problems.append("root_path missing or outside the package")
    entries = [("page", p) for p in web_ui.get("pages", [])]
    entries += [("section", s) for s in web_ui.get("config_sections", [])]
    for kind, entry in entries:
        problems += _entry_problems(kind, entry, bundle, bundle_dir)
    return problems


def _entry_problems(
    kind: str, entry: dict[str, Any], bundle: dict[str, Any], bundle_dir: Path
) -> list[str]:
    """§8.2 for one page or config section."""
    problems = []
    title = entry.get("label") if kind == "page" else entry.get("title")
    if not entry.get("id") or not title:
        problems.append(f"{kind} without id or label/title")
    if entry.get("bundle_id") != bundle.get("id"):
        problems.append(f"{kind} {entry.get('id')} names another bundle")
    script = entry.get("entry_script")
    if not _relative_ok(script):
        problems.append(f"{kind} entry_script {script!r} not relative")
    else:
        target = (bundle_dir / script).resolve()
        if not target.is_file() or not target.is_relative_to(bundle_dir):
            problems.append(f"{kind} entry_script {script!r} not a file in the bundle")
    if kind == "page":
        route = entry.get("route", "")
        if not route or "/" in route or "\\" in route or "://" in route or route[0] == ".":
            problems.append(f"page route {route!r} is not a slug")
        icon = entry.get("icon")
        if icon is not None and not _relative_ok(icon):
            problems.append("icon not relative")
    elif entry.get("parent_tab") not in (None, "integrations"):
        problems.append("section parent_tab must be integrations")
    return problems


def _check_schema(schema: dict[str, Any], name: str) -> None:
    """§2.3: the hard checks, and every enum string the host's serde would refuse."""
    assert schema["plugin_name"] == name
    assert schema["schema_version"] == 1
    assert isinstance(schema.get("allow_unvalidated_config", False), bool)
    for setting in schema.get("settings", []):
        assert setting["key"]
        assert setting["value_schema"]["kind"] in _KINDS
        assert setting["apply_mode"] in _APPLY
        assert setting["restart_scope"] in _RESTART
        assert setting["visibility"] in _VISIBILITY
        if "default_json" in setting:
            json.loads(setting["default_json"])  # a JSON text held in a string
        for constraint in setting.get("constraints", []):
            assert constraint["kind"] in _CONSTRAINTS
            for bound in ("min", "max"):
                if bound in constraint:
                    float(constraint[bound])  # decimal strings


def _unpack_like_the_host(archive: Path, into: Path) -> None:
    """tar, keeping modes (tar-rs sets each file to its header mode & 0o777)."""
    into.mkdir()
    tar = shutil.which("tar")
    assert tar is not None, "tar is needed to unpack as the host does"
    subprocess.run([tar, "-xzpf", str(archive), "-C", str(into)], check=True)


@pytest.mark.parametrize("name", ["x402", "pay-node.2"])
def test_archive_follows_every_installer_rule(tmp_path: Path, name: str) -> None:
    """Name, container, layout, modes, plugin.toml, launcher, manifest and web UI."""
    archive = _build(tmp_path / "out", name, _node(tmp_path / "node"))
    triple = _TRIPLES[(platform.system(), platform.machine())]
    assert archive.name == f"{name}-{__version__}-{triple}.tar.gz"

    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    # One root folder named after the plugin; nothing outside it, no escapes.
    assert {n.split("/", 1)[0] for n in members} == {name}
    assert members[name].isdir()
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in members)
    assert members[f"{name}/plugin.toml"].isfile()
    launcher = members[f"{name}/{name}"]
    assert launcher.isfile()
    assert stat.S_IMODE(launcher.mode) == 0o755

    unpacked = tmp_path / "installed"
    _unpack_like_the_host(archive, unpacked)
    root = unpacked / name
    script = root / name
    assert stat.S_IMODE(script.stat().st_mode) == 0o755  # the mode survived extraction
    assert os.access(script, os.X_OK)
    assert script.read_bytes().startswith(b"#!")
    manifest = json.loads((root / "plugin-manifest.json").read_text(encoding="utf-8"))
    _check_schema(manifest["config_schema"], name)
    web_ui = manifest["web_ui"]
    assert _web_ui_problems(root, web_ui) == []
    (page,) = web_ui["pages"]
    assert (page["id"], page["label"], page["route"], page["entry_script"]) == (
        "payments",
        "Payments",
        "payments",
        "payments.js",
    )
    assert web_ui["bundles"][0]["root_path"] == "web"
    entry = (root / "web" / "payments.js").read_text(encoding="utf-8")
    assert "export function registerMeshPluginUi" in entry


def test_web_ui_checker_catches_what_the_host_marks_invalid(tmp_path: Path) -> None:
    """The checker is not vacuous: each broken variant of the real web_ui is reported."""
    archive = _build(tmp_path / "out", "x402", _node(tmp_path / "node"))
    _unpack_like_the_host(archive, tmp_path / "u")
    root = tmp_path / "u" / "x402"
    good = json.loads((root / "plugin-manifest.json").read_text(encoding="utf-8"))["web_ui"]

    def broken(change: str) -> dict[str, Any]:
        ui = json.loads(json.dumps(good))
        page, bundle = ui["pages"][0], ui["bundles"][0]
        if change == "two bundles":
            ui["bundles"].append({"id": "b", "root_path": "web"})
        elif change == "root escapes":
            bundle["root_path"] = "../web"
        elif change == "remote root":
            bundle["root_path"] = "https://example.com/web"
        elif change == "missing script":
            page["entry_script"] = "nope.js"
        elif change == "route with slash":
            page["route"] = "a/b"
        elif change == "other bundle":
            page["bundle_id"] = "other"
        elif change == "no label":
            page["label"] = ""
        return ui

    for change in (
        "two bundles",
        "root escapes",
        "remote root",
        "missing script",
        "route with slash",
        "other bundle",
        "no label",
    ):
        assert _web_ui_problems(root, broken(change)), change


def test_bad_names_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """mesh-llm's name rule: a bad or reserved name exits 2, names the problem, writes nothing."""
    for name in ("bad name", "", "x/y", "blobstore", "é"):
        args = [sys.executable, "-m", "mesh_x402", "plugin-install", "--archive-only"]
        done = subprocess.run(
            [*args, "--out", str(tmp_path / "out"), "--name", name],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2, name
        assert "plugin name" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_launcher_without_any_config_says_so(tmp_path: Path) -> None:
    """No --config at build time and no $MESH_X402_CONFIG: exit 2 with the fix on stderr."""
    archive = _build(tmp_path / "out", "x402", None)
    _unpack_like_the_host(archive, tmp_path / "u")
    env = {k: v for k, v in os.environ.items() if k != "MESH_X402_CONFIG"}
    done = subprocess.run(
        [str(tmp_path / "u" / "x402" / "x402")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert "MESH_X402_CONFIG" in done.stderr


@pytest.mark.parametrize("by_env", [False, True], ids=["build-time-config", "env-config"])
async def test_installed_launcher_starts_under_the_host(tmp_path: Path, by_env: bool) -> None:
    """Spawned as a store plugin (its path, no args, another cwd): it connects, initializes
    as the install name, and serves the Payments page's JSON through the host, saying
    plainly that it has no chain connection."""
    name = "pay-node"
    config = _node(tmp_path / "node")
    archive = _build(tmp_path / "out", name, None if by_env else config)
    _unpack_like_the_host(archive, tmp_path / "installed")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    if by_env:
        env["MESH_X402_CONFIG"] = str(config)
    host = Host(
        HostConfig(
            plugin_name=name,
            command=[str(tmp_path / "installed" / name / name)],
            home=tmp_path / "home",
            env=env,
            stderr_path=tmp_path / "plugin.log",
        )
    )
    cwd = Path.cwd()
    os.chdir(elsewhere)  # the host sets no cwd: the child inherits this one
    try:
        await host.start()
    finally:
        os.chdir(cwd)
    try:
        assert host.state == "running", (tmp_path / "plugin.log").read_text()
        assert host.initialize_response is not None
        assert host.initialize_response.plugin_id == name
        assert host.binding("GET", "/x402/node") is not None
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{host.management_url}/api/plugins/{name}/http/x402/node")
        assert response.status_code == 200
        node = response.json()
        assert node["chain"]["connected"] is False
        assert node["agentId"] is None
    finally:
        await host.stop()


def test_install_runs_mesh_llm_when_it_is_on_the_path(tmp_path: Path) -> None:
    """With `mesh-llm` on the PATH it is run as `plugins install --archive FILE --name NAME`
    (a recording stand-in here: mesh-llm itself cannot run in the test); without it, the
    command is printed for the operator to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "mesh-llm"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    config = _node(tmp_path / "node")
    args = [sys.executable, "-m", "mesh_x402", "plugin-install", "--config", str(config)]
    base_path = os.environ.get("PATH", "")
    done = subprocess.run(
        [*args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{base_path}"},
    )
    assert done.returncode == 0, done.stderr
    (archive,) = (tmp_path / "out").glob("*.tar.gz")
    argv = json.loads(record.read_text(encoding="utf-8"))
    expected = ["plugins", "install", "--archive", str(archive), "--name", "x402"]
    assert argv == [*expected, "--version", __version__]

    without = subprocess.run(
        [*args, "--out", str(tmp_path / "out2")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert without.returncode == 0, without.stderr
    assert "mesh-llm is not on the PATH" in without.stdout
    assert "mesh-llm plugins install --archive" in without.stdout


async def test_installed_plugin_takes_payments_on_a_chain(tmp_path: Path, anvil: Anvil) -> None:
    """The archive carries everything `serve` needs besides the Python environment (the
    compiled contracts included): installed and started by the host, it reaches the chain,
    quotes a paid route with 402 and reports the chain as connected."""
    client = ChainClient.connect(anvil.url, chain_id=31337)
    deployment = deploy(client, dev_account(0), with_test_token=True, with_identity_registry=True)
    upstream = f"http://127.0.0.1:{_closed_port()}"  # a quote needs no upstream
    config = write_gate_node(
        tmp_path / "node", anvil.url, deployment.token, deployment.settlement, upstream
    )
    archive = _build(tmp_path / "out", "x402", config)
    _unpack_like_the_host(archive, tmp_path / "installed")
    host = Host(
        HostConfig(
            plugin_name="x402",
            command=[str(tmp_path / "installed" / "x402" / "x402")],
            home=tmp_path / "home",
            env={"PATH": os.environ.get("PATH", "")},
            stderr_path=tmp_path / "plugin.log",
        )
    )
    await host.start()
    try:
        base = f"{host.management_url}/api/plugins/x402/http"
        quoted = connected = False
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(300):  # the gate and the chain watcher come up after the handshake
                if not quoted:
                    paid = await http.post(f"{base}/v1/chat/completions", json={"model": "held"})
                    quoted = paid.status_code == 402
                if not connected:
                    node = (await http.get(f"{base}/x402/node")).json()
                    connected = node["chain"]["connected"]
                if quoted and connected:
                    break
                await asyncio.sleep(0.1)
    finally:
        await host.stop()
    log = (tmp_path / "plugin.log").read_text(encoding="utf-8")
    assert quoted, log[-3000:]
    assert connected, log[-3000:]
