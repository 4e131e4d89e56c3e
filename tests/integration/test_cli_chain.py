"""The on-chain CLI (deploy, init, register, status, withdraw) on a real anvil.

Every command runs as the real `mesh-x402` process; the chain, the token and
the contracts are real. Payments reach the settlement contract the way the
reconciler sends them: an EIP-3009 authorization signed by a payer holding
minted test tokens, settled by the node's key.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import (
    PEER_ID_KEY,
    SIGNER_KEY,
    Credit,
    IdentityRegistryBinding,
    SettlementBinding,
    SettlementItem,
    SettleStatus,
    TokenBinding,
)
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.eip712 import TransferAuthorization, sign_transfer_authorization
from mesh_x402.chain.registration import decode_data_uri
from mesh_x402.config import load_config
from mesh_x402.keys import load_key_file
from web3 import Web3

pytestmark = pytest.mark.integration

DEPLOYER_ENV = "MESH_X402_TEST_DEPLOYER_KEY"
PEER_ID = "ab" * 32


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mesh-x402 ARGS` as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "mesh_x402", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def deployer_env() -> dict[str, str]:
    return {DEPLOYER_ENV: dev_account(0).key.hex()}


def deploy(anvil: Anvil, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "deploy", "--rpc", anvil.url, "--key-env", DEPLOYER_ENV, "--out", out, *extra,
        env=deployer_env(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def deployment(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mesh deployed through the CLI, shared by the node tests (each node its own agent)."""
    out = tmp_path_factory.mktemp("mesh") / "deployment.json"
    done = deploy(anvil, out, "--with-test-token", "--with-identity-registry")
    assert done.returncode == 0, done.stderr
    return out


def make_node(anvil: Anvil, deployment: Path, tmp_path: Path) -> Path:
    """Init a node folder from the deployment and fund the node key with gas money."""
    folder = tmp_path / "node"
    done = cli("init", "--dir", folder, "--deployment", deployment, "--rpc", anvil.url)
    assert done.returncode == 0, done.stderr
    address = load_key_file(folder / "node.key").address
    Web3(Web3.HTTPProvider(anvil.url)).provider.make_request(
        "anvil_setBalance",  # type: ignore[arg-type]
        [address, hex(10**20)],
    )
    return folder / "node.toml"


def chain_of(config_path: Path) -> tuple[ChainClient, dict[str, str]]:
    config = load_config(config_path)
    chain = config.chain
    assert chain.token is not None
    assert chain.settlement is not None
    assert chain.identity_registry is not None
    return ChainClient.connect(chain.rpc, chain_id=chain.chain_id), {
        "token": chain.token,
        "settlement": chain.settlement,
        "registry": chain.identity_registry,
    }


def status(config: Path) -> dict[str, object]:
    done = cli("status", "--config", config, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def agent_id_of(output: str) -> int:
    lines = [line for line in output.splitlines() if line.startswith("agentId ")]
    assert len(lines) == 1, output
    return int(lines[0].split()[1])


def pay(
    *,
    client: ChainClient,
    addresses: dict[str, str],
    settler: LocalAccount,
    agent_id: int,
    value: int,
    refund: int,
) -> list[SettleStatus]:
    """One real x402 payment: mint to a payer, sign EIP-3009, settle through MeshSettlement."""
    payer: LocalAccount = Account.create()
    token = TokenBinding(client, addresses["token"])
    token.mint(dev_account(0), payer.address, value)
    now = int(client.w3.eth.get_block("latest")["timestamp"])
    auth = TransferAuthorization(
        from_=payer.address,
        to=addresses["settlement"],
        value=value,
        valid_after=0,
        valid_before=now + 3600,
        nonce=secrets.token_bytes(32),
    )
    signature = sign_transfer_authorization(
        payer.key,
        auth,
        token_name=token.name(),
        token_version=token.version(),
        chain_id=client.chain_id,
        token=token.address,
    )
    item = SettlementItem(
        authorization=auth,
        signature=signature,
        entry_agent_id=agent_id,
        receipt_hash=secrets.token_bytes(32),
        credits=[Credit(agent_id, value - refund)],
        refund=refund,
    )
    result = SettlementBinding(client, addresses["settlement"]).settle(settler, [item])
    assert token.balance_of(payer.address) == refund
    return result.statuses


class TestDeploy:
    def test_deploy_writes_a_usable_deployment(self, anvil: Anvil, tmp_path: Path) -> None:
        """deploy puts the three contracts on chain and writes their addresses."""
        out = tmp_path / "deployment.json"
        done = deploy(anvil, out, "--with-test-token", "--with-identity-registry")
        assert done.returncode == 0, done.stderr
        data = json.loads(out.read_text())
        assert set(data) == {"chainId", "token", "settlement", "identityRegistry", "deployedAt"}
        assert data["chainId"] == 31337
        client = ChainClient.connect(anvil.url, chain_id=31337)
        settlement = SettlementBinding(client, data["settlement"])
        assert settlement.token() == data["token"]
        assert settlement.identity_registry() == data["identityRegistry"]
        assert TokenBinding(client, data["token"]).name() == "USD Coin"
        assert IdentityRegistryBinding(client, data["identityRegistry"]).version() == "2.0.0"
        assert dev_account(0).key.hex() not in done.stdout + done.stderr
        assert f"wrote {out}" in done.stdout

    def test_existing_token_and_registry_are_reused(
        self, anvil: Anvil, deployment: Path, tmp_path: Path
    ) -> None:
        """On a public chain the token and registry are given; only the settlement is new."""
        given = json.loads(deployment.read_text())
        second = tmp_path / "second.json"
        done = deploy(
            anvil, second, "--token", given["token"], "--identity-registry",
            given["identityRegistry"],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        data = json.loads(second.read_text())
        assert (data["token"], data["identityRegistry"]) == (
            given["token"],
            given["identityRegistry"],
        )
        assert data["settlement"] != given["settlement"]

    def test_test_token_refused_on_a_public_chain_id(self, tmp_path: Path) -> None:
        """On chain id 8453 the public-mint token needs --force; without it nothing is sent."""
        with Anvil(chain_id=8453) as base_like:
            out = tmp_path / "deployment.json"
            done = deploy(base_like, out, "--with-test-token", "--with-identity-registry")
            assert done.returncode == 2
            assert done.stderr.strip().splitlines() == [
                "mesh-x402 deploy: chain id 8453 is not a local chain (31337, 1337): the test "
                "token has a public mint; pass --token with the real token's address, or --force"
            ]
            assert not out.exists()
            client = ChainClient.connect(base_like.url, chain_id=8453)
            assert client.w3.eth.get_transaction_count(dev_account(0).address) == 0

            forced = deploy(
                base_like, out, "--with-test-token", "--with-identity-registry", "--force"
            )
            assert forced.returncode == 0, forced.stderr
            assert json.loads(out.read_text())["chainId"] == 8453

    def test_unreachable_rpc(self, tmp_path: Path) -> None:
        """An RPC that does not answer is one line naming it, exit 1."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        done = cli(
            "deploy", "--rpc", f"http://127.0.0.1:{port}", "--key-env", DEPLOYER_ENV,
            "--with-test-token", "--with-identity-registry", "--out", tmp_path / "d.json",
            env=deployer_env(),
        )  # fmt: skip
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"mesh-x402 deploy: rpc http://127.0.0.1:{port} does not answer"
        )

    def test_bad_key_is_not_echoed(self, anvil: Anvil, tmp_path: Path) -> None:
        """A malformed key in the environment is refused without printing it."""
        secret = "zz" + "1" * 62
        done = cli(
            "deploy", "--rpc", anvil.url, "--key-env", DEPLOYER_ENV, "--with-test-token",
            "--with-identity-registry", "--out", tmp_path / "d.json",
            env={DEPLOYER_ENV: secret},
        )  # fmt: skip
        assert done.returncode == 2
        assert secret not in done.stderr
        assert done.stderr.strip() == (
            f"mesh-x402 deploy: environment variable {DEPLOYER_ENV} does not hold a "
            "32-byte hex private key"
        )


class TestNodeLifecycle:
    def test_init_register_status_settle_withdraw(
        self, anvil: Anvil, deployment: Path, tmp_path: Path
    ) -> None:
        """A node registers once, shows its binding, gets credited and withdraws to its wallet."""
        config = make_node(anvil, deployment, tmp_path)
        node_config = load_config(config)
        deployed = json.loads(deployment.read_text())
        assert node_config.chain.settlement == deployed["settlement"]
        # Event scans (settled payments, withdrawals) start at the deployment's block.
        assert node_config.chain.settlement_block == deployed["deployedAt"] > 0
        assert node_config.chain.token == deployed["token"]
        assert node_config.chain.identity_registry == deployed["identityRegistry"]
        assert (node_config.chain.chain_id, node_config.chain.rpc) == (31337, anvil.url)

        # The peer id comes from the mesh view the plugin keeps.
        state = node_config.state_path
        state.mkdir(parents=True, exist_ok=True)
        (state / "mesh-view.json").write_text(json.dumps({"local_peer_id": PEER_ID}))
        client, addresses = chain_of(config)
        node_key = load_key_file(node_config.key_path)

        first = cli("register", "--config", config)
        assert first.returncode == 0, first.stderr
        agent_id = agent_id_of(first.stdout)
        assert first.stdout.splitlines()[0] == f"registered a new agent: agentId {agent_id}"
        identity = json.loads((state / "identity.json").read_text())
        assert identity == {
            "agentId": agent_id,
            "chainId": 31337,
            "identityRegistry": addresses["registry"],
        }
        registry = IdentityRegistryBinding(client, addresses["registry"])
        assert registry.owner_of(agent_id) == node_key.address
        assert registry.get_metadata(agent_id, PEER_ID_KEY) == bytes.fromhex(PEER_ID)
        assert registry.get_metadata(agent_id, SIGNER_KEY) == b""  # signer is the wallet
        assert registry.get_agent_wallet(agent_id) == node_key.address
        registration = decode_data_uri(registry.token_uri(agent_id))
        assert registration["x402Support"] is True
        assert registration["registrations"] == [
            {"agentId": agent_id, "agentRegistry": f"eip155:31337:{addresses['registry']}"}
        ]
        assert [s["endpoint"] for s in registration["services"]] == [
            "http://127.0.0.1:9402/v1/chat/completions",
            "http://127.0.0.1:9402/v1/completions",
        ]

        # Twice: nothing changes, no transaction is sent.
        nonce = client.w3.eth.get_transaction_count(node_key.address)
        block = client.block_number()
        second = cli("register", "--config", config)
        assert second.returncode == 0, second.stderr
        assert "already registered" in second.stdout
        assert agent_id_of(second.stdout) == agent_id
        assert client.w3.eth.get_transaction_count(node_key.address) == nonce
        assert client.block_number() == block

        shown = status(config)
        assert shown["agentId"] == agent_id
        assert shown["registered"] is True
        assert shown["owner"] == shown["wallet"] == shown["signer"] == node_key.address
        assert shown["peerId"] == {"local": PEER_ID, "onChain": PEER_ID}
        assert shown["peerIdBinding"] == "match"
        assert shown["credited"] == "0"
        assert shown["tokenBalance"] == "0"

        # One real payment of 1000, 900 credited to the node, 100 refunded to the payer.
        node_account: LocalAccount = Account.from_key(node_key.secret)
        assert pay(
            client=client,
            addresses=addresses,
            settler=node_account,
            agent_id=agent_id,
            value=1000,
            refund=100,
        ) == [SettleStatus.SETTLED]
        assert status(config)["credited"] == "900"

        done = cli("withdraw", "--config", config)
        assert done.returncode == 0, done.stderr
        assert f"withdrew 900 to {node_key.address} for agentId {agent_id}" in done.stdout
        after = status(config)
        assert (after["credited"], after["tokenBalance"]) == ("0", "900")

        again = cli("withdraw", "--config", config)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"nothing to withdraw for agentId {agent_id}"

    def test_separate_wallet_is_proven_and_paid(
        self, anvil: Anvil, deployment: Path, tmp_path: Path
    ) -> None:
        """With a payout wallet key, the wallet is set by its own EIP-712 proof, the node key
        is recorded as signer (so it may still settle), and withdrawals go to the wallet."""
        config = make_node(anvil, deployment, tmp_path)
        wallet: LocalAccount = Account.create()
        wallet_file = tmp_path / "wallet.key"
        wallet_file.write_text(wallet.key.hex())
        wallet_file.chmod(0o600)
        node_key = load_key_file(load_config(config).key_path)

        done = cli(
            "register", "--config", config, "--peer-id", PEER_ID.upper(),
            "--wallet-key-file", wallet_file,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        agent_id = agent_id_of(done.stdout)
        assert "agentWallet" in done.stdout
        shown = status(config)
        assert shown["wallet"] == wallet.address
        assert shown["signerMetadata"] == node_key.address
        assert shown["peerIdBinding"] == "unknown"  # no mesh view: local peer id not known
        assert shown["peerId"] == {"local": None, "onChain": PEER_ID}

        again = cli(
            "register", "--config", config, "--peer-id", PEER_ID, "--wallet-key-file", wallet_file
        )
        assert again.returncode == 0, again.stderr
        assert "already registered" in again.stdout

        client, addresses = chain_of(config)
        node_account: LocalAccount = Account.from_key(node_key.secret)
        assert pay(
            client=client,
            addresses=addresses,
            settler=node_account,
            agent_id=agent_id,
            value=500,
            refund=0,
        ) == [SettleStatus.SETTLED]
        done = cli("withdraw", "--config", config)
        assert done.returncode == 0, done.stderr
        assert f"withdrew 500 to {wallet.address}" in done.stdout
        assert TokenBinding(client, addresses["token"]).balance_of(wallet.address) == 500

    def test_changed_peer_id_and_uri_are_updated_in_place(
        self, anvil: Anvil, deployment: Path, tmp_path: Path
    ) -> None:
        """A new peer id or agent URI updates the same agent, never mints a second one."""
        config = make_node(anvil, deployment, tmp_path)
        first = cli("register", "--config", config, "--peer-id", PEER_ID)
        assert first.returncode == 0, first.stderr
        new_peer = "cd" * 32
        second = cli("register", "--config", config, "--peer-id", new_peer)
        assert second.returncode == 0, second.stderr
        assert agent_id_of(second.stdout) == agent_id_of(first.stdout)
        assert second.stdout.splitlines()[0] == f"updated: {PEER_ID_KEY}, agentURI"
        shown = status(config)
        assert shown["peerId"] == {"local": None, "onChain": new_peer}

        uri = "https://node.example/.well-known/agent-registration.json"
        third = cli("register", "--config", config, "--peer-id", new_peer, "--agent-uri", uri)
        assert third.returncode == 0, third.stderr
        assert third.stdout.splitlines()[0] == "updated: agentURI"
        client, addresses = chain_of(config)
        registry = IdentityRegistryBinding(client, addresses["registry"])
        assert registry.token_uri(agent_id_of(first.stdout)) == uri


class TestNodeErrors:
    def test_wrong_chain_id(self, anvil: Anvil, deployment: Path, tmp_path: Path) -> None:
        config = make_node(anvil, deployment, tmp_path)
        text = config.read_text().replace("chain_id = 31337", "chain_id = 1")
        config.write_text(text)
        done = cli("status", "--config", config)
        assert done.returncode == 1
        assert done.stderr.strip() == "mesh-x402 status: chain id 31337 but config says 1"

    def test_no_contract_code(self, anvil: Anvil, deployment: Path, tmp_path: Path) -> None:
        config = make_node(anvil, deployment, tmp_path)
        settlement = load_config(config).chain.settlement
        assert settlement is not None
        eoa = dev_account(5).address
        config.write_text(config.read_text().replace(settlement, eoa))
        done = cli("register", "--config", config, "--peer-id", PEER_ID)
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"mesh-x402 register: no contract code at {eoa} (settlement)"
        )

    def test_register_needs_a_peer_id(self, anvil: Anvil, deployment: Path, tmp_path: Path) -> None:
        """Without --peer-id and without a mesh view there is nothing to bind: exit 2."""
        config = make_node(anvil, deployment, tmp_path)
        done = cli("register", "--config", config)
        assert done.returncode == 2
        assert done.stderr.startswith("mesh-x402 register: no peer id: pass --peer-id HEX")
        assert len(done.stderr.strip().splitlines()) == 1
        assert not (load_config(config).state_path / "identity.json").exists()

    def test_withdraw_before_register(self, anvil: Anvil, deployment: Path, tmp_path: Path) -> None:
        config = make_node(anvil, deployment, tmp_path)
        done = cli("withdraw", "--config", config)
        assert done.returncode == 2
        assert "run `mesh-x402 register` first" in done.stderr

    def test_status_before_register(self, anvil: Anvil, deployment: Path, tmp_path: Path) -> None:
        config = make_node(anvil, deployment, tmp_path)
        shown = status(config)
        assert shown["registered"] is False
        assert shown["agentId"] is None
        text = cli("status", "--config", config)
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("not registered in eip155:31337:")
