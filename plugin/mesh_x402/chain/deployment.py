"""`deployment.json`: where a mesh's contracts live, and how they get there.

One deployment serves a whole mesh: every node's config points at the same
token, settlement contract and identity registry on one chain. `deploy`
writes the file and `init --deployment` copies it into a node's `[chain]`
section, so operators never type addresses by hand.

On a local chain everything is deployed fresh. On a public chain the token
(USDC) and the ERC-8004 registry already exist and are given by address;
only `MeshSettlement` is deployed. The test token has a public `mint`, so it
is refused on any chain that is not a local one unless forced.

`deployedAt` is the block number of the settlement contract's deployment:
the first block an event scan (reconciler, audits) needs to look at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from mesh_x402.chain.artifacts import ArtifactName, load_artifact
from mesh_x402.chain.client import ChainClient
from mesh_x402.errors import ChainError, ConfigError, PluginError
from mesh_x402.state import write_atomic

__all__ = [
    "LOCAL_CHAIN_IDS",
    "TEST_TOKEN_NAME",
    "TEST_TOKEN_VERSION",
    "Deployment",
    "DeploymentRefused",
    "deploy",
    "load_deployment",
    "save_deployment",
]

LOCAL_CHAIN_IDS: Final = frozenset({31337, 1337})
# The domain of mainnet USDC, so x402 clients see the same `extra` they know.
TEST_TOKEN_NAME: Final = "USD Coin"  # noqa: S105 - a token name, not a password
TEST_TOKEN_VERSION: Final = "2"  # noqa: S105 - an EIP-712 version, not a password


def _address(value: str) -> str:
    try:
        return to_checksum_address(value)
    except ValueError:
        raise ValueError(f"not a 20-byte hex address: {value!r}") from None


Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_address)]


class Deployment(BaseModel):
    """The contracts of one mesh: `{chainId, token, settlement, identityRegistry, deployedAt}`."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    chain_id: int = Field(gt=0)
    token: Address
    settlement: Address
    identity_registry: Address
    deployed_at: int = Field(ge=0, description="Block of the settlement deployment.")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


class DeploymentRefused(PluginError):  # noqa: N818 - a refusal, not a fault: exit code 2
    """The flags ask for something unsafe or contradictory; nothing was deployed."""


def load_deployment(path: Path) -> Deployment:
    """Read and validate a `deployment.json`.

    Raises:
        ConfigError: missing, not JSON, or a field is wrong (named in the message).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    try:
        return Deployment.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def save_deployment(path: Path, deployment: Deployment) -> None:
    """Write the file atomically (a half-written deployment.json would strand the mesh)."""
    write_atomic(path, deployment.to_json().encode())


def _deploy(
    client: ChainClient, account: LocalAccount, name: ArtifactName, *args: object
) -> tuple[str, int]:
    artifact = load_artifact(name)
    factory = client.w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
    receipt = client.transact(account, factory.constructor(*args), f"deploy {name}")
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploy {name}: the receipt names no contract address")
    return to_checksum_address(address), int(receipt["blockNumber"])


def deploy(
    client: ChainClient,
    account: LocalAccount,
    *,
    with_test_token: bool = False,
    with_identity_registry: bool = False,
    token: str | None = None,
    identity_registry: str | None = None,
    force: bool = False,
) -> Deployment:
    """Deploy what is asked and return the deployment.

    Exactly one of `with_test_token` / `token`, and one of
    `with_identity_registry` / `identity_registry`, must be given. Given
    addresses must hold code.

    Raises:
        DeploymentRefused: contradictory flags, or the test token on a public chain.
        NoContractCode: a given address has no code.
        ChainError: a deployment failed.
    """
    if with_test_token == (token is not None):
        raise DeploymentRefused("give exactly one of --with-test-token and --token ADDR")
    if with_identity_registry == (identity_registry is not None):
        raise DeploymentRefused(
            "give exactly one of --with-identity-registry and --identity-registry ADDR"
        )
    chain_id = client.chain_id
    if with_test_token and chain_id not in LOCAL_CHAIN_IDS and not force:
        raise DeploymentRefused(
            f"chain id {chain_id} is not a local chain (31337, 1337): the test token has a "
            "public mint; pass --token with the real token's address, or --force"
        )
    if token is not None:
        token = _checked(client, token, "token")
    if identity_registry is not None:
        identity_registry = _checked(client, identity_registry, "identity registry")
    if token is None:
        token, _ = _deploy(client, account, "TestUSDC", TEST_TOKEN_NAME, TEST_TOKEN_VERSION)
    if identity_registry is None:
        identity_registry, _ = _deploy(client, account, "IdentityRegistry")
    settlement, block = _deploy(client, account, "MeshSettlement", token, identity_registry)
    return Deployment(
        chain_id=chain_id,
        token=token,
        settlement=settlement,
        identity_registry=identity_registry,
        deployed_at=block,
    )


def _checked(client: ChainClient, address: str, what: str) -> str:
    try:
        checksummed = to_checksum_address(address)
    except ValueError:
        raise DeploymentRefused(
            f"--{what.replace(' ', '-')} {address!r} is not an address"
        ) from None
    client.require_code(checksummed, what)
    return checksummed
