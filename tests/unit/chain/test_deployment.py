"""deployment.json: the model, the file and the deploy rules (on the in-process chain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.bindings import IdentityRegistryBinding, SettlementBinding, TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import (
    Deployment,
    DeploymentRefused,
    deploy,
    load_deployment,
    save_deployment,
)
from mesh_x402.errors import ConfigError, NoContractCode
from web3 import EthereumTesterProvider, Web3

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
SETTLEMENT = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def make_json(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "chainId": 31337,
        "token": TOKEN,
        "settlement": SETTLEMENT,
        "identityRegistry": REGISTRY,
        "deployedAt": 3,
    }
    data.update(overrides)
    return data


class TestModel:
    def test_camel_case_round_trip(self, tmp_path: Path) -> None:
        """The file uses camelCase keys and reads back to the same deployment."""
        path = tmp_path / "deployment.json"
        deployment = Deployment.model_validate(make_json(token=TOKEN.lower()))
        save_deployment(path, deployment)
        on_disk = json.loads(path.read_text())
        assert on_disk == make_json()  # addresses are written checksummed
        assert load_deployment(path) == deployment
        assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"token": "0x1234"}, "token: String should match pattern"),
            ({"chainId": 0}, "chainId: Input should be greater than 0"),
            ({"extra": 1}, "extra: unknown key"),
            ({"deployedAt": -1}, "deployedAt: Input should be greater than or equal to 0"),
        ],
    )
    def test_bad_fields_are_named(
        self, tmp_path: Path, change: dict[str, object], message: str
    ) -> None:
        path = tmp_path / "d.json"
        path.write_text(json.dumps(make_json(**change)))
        with pytest.raises(ConfigError, match=message):
            load_deployment(path)

    def test_missing_field(self, tmp_path: Path) -> None:
        data = make_json()
        del data["settlement"]
        path = tmp_path / "d.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match="settlement: Field required"):
            load_deployment(path)

    def test_not_json_and_missing(self, tmp_path: Path) -> None:
        path = tmp_path / "d.json"
        with pytest.raises(ConfigError, match="no such file"):
            load_deployment(path)
        path.write_text("{")
        with pytest.raises(ConfigError, match="not valid JSON"):
            load_deployment(path)


@pytest.fixture
def client() -> ChainClient:
    return ChainClient(Web3(EthereumTesterProvider()))


@pytest.fixture
def deployer() -> LocalAccount:
    account: LocalAccount = Account.from_key((1).to_bytes(32, "big"))
    return account


class TestDeploy:
    def test_full_local_deployment(self, client: ChainClient, deployer: LocalAccount) -> None:
        """Token, registry and settlement are deployed and wired to each other."""
        # eth-tester's chain id is not a local one for the rule, hence force.
        d = deploy(client, deployer, with_test_token=True, with_identity_registry=True, force=True)
        assert d.chain_id == client.chain_id
        settlement = SettlementBinding(client, d.settlement)
        assert settlement.token() == d.token
        assert settlement.identity_registry() == d.identity_registry
        token = TokenBinding(client, d.token)
        assert (token.name(), token.version(), token.decimals()) == ("USD Coin", "2", 6)
        assert IdentityRegistryBinding(client, d.identity_registry).version() == "2.0.0"
        assert d.deployed_at == client.block_number()

    def test_existing_contracts_are_reused(
        self, client: ChainClient, deployer: LocalAccount
    ) -> None:
        """Given addresses are used as they are; only the settlement is new."""
        first = deploy(
            client, deployer, with_test_token=True, with_identity_registry=True, force=True
        )
        second = deploy(
            client, deployer, token=first.token, identity_registry=first.identity_registry
        )
        assert (second.token, second.identity_registry) == (first.token, first.identity_registry)
        assert second.settlement != first.settlement

    def test_test_token_refused_on_a_public_chain(
        self, client: ChainClient, deployer: LocalAccount
    ) -> None:
        """The public-mint token needs --force off 31337/1337, and nothing is sent."""
        before = client.block_number()
        with pytest.raises(DeploymentRefused, match=f"chain id {client.chain_id} is not a local"):
            deploy(client, deployer, with_test_token=True, with_identity_registry=True)
        assert client.block_number() == before

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"with_identity_registry": True}, "exactly one of --with-test-token and --token"),
            (
                {"with_test_token": True, "token": TOKEN, "with_identity_registry": True},
                "exactly one of --with-test-token",
            ),
            ({"with_test_token": True}, "exactly one of --with-identity-registry"),
        ],
    )
    def test_contradictory_flags(
        self, client: ChainClient, deployer: LocalAccount, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(DeploymentRefused, match=message):
            deploy(client, deployer, force=True, **kwargs)  # type: ignore[arg-type]

    def test_given_address_without_code(self, client: ChainClient, deployer: LocalAccount) -> None:
        """A token address that holds no contract is refused before deploying anything."""
        with pytest.raises(NoContractCode, match=f"no contract code at {TOKEN} \\(token\\)"):
            deploy(client, deployer, token=TOKEN, with_identity_registry=True)
