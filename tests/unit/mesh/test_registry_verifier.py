"""Identity claims checked against a real ERC-8004 registry on the in-process chain."""

from __future__ import annotations

import socket

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_canonical_address
from mesh_x402.chain.bindings import PEER_ID_KEY, SIGNER_KEY, IdentityRegistryBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import deploy
from mesh_x402.mesh.identities import Claim, RegistryVerifier, Verdict
from web3 import EthereumTesterProvider, HTTPProvider, Web3

PEER_A = "aa" * 32
PEER_B = "bb" * 32


def funded(index: int) -> LocalAccount:
    """eth-tester funds the accounts of private keys 1, 2, 3, ..."""
    account: LocalAccount = Account.from_key(index.to_bytes(32, "big"))
    return account


@pytest.fixture(scope="module")
def registry() -> tuple[IdentityRegistryBinding, int, int]:
    """Agent A: wallet = its owner key. Agent B: a separate signer in `mesh-llm.signer`."""
    client = ChainClient(Web3(EthereumTesterProvider()))
    owner_a, owner_b = funded(1), funded(2)
    deployed = deploy(
        client, owner_a, with_identity_registry=True, with_test_token=True, force=True
    )
    binding = IdentityRegistryBinding(client, deployed.identity_registry)
    agent_a, _ = binding.register(owner_a, "data:,a", {PEER_ID_KEY: bytes.fromhex(PEER_A)})
    agent_b, _ = binding.register(
        owner_b,
        "data:,b",
        {PEER_ID_KEY: bytes.fromhex(PEER_B), SIGNER_KEY: to_canonical_address(funded(3).address)},
    )
    return binding, agent_a, agent_b


def claim(agent_id: int, peer_id: str, signer: str) -> Claim:
    return Claim(agent_id, peer_id, signer, 31337, "0x" + "00" * 20)


@pytest.mark.parametrize(
    ("who", "peer_id", "signer", "verdict"),
    [
        ("a", PEER_A, funded(1).address, Verdict.VERIFIED),
        ("b", PEER_B, funded(3).address, Verdict.VERIFIED),
        ("b", PEER_B, funded(2).address, Verdict.VERIFIED),  # the owner is B's agentWallet
        ("a", PEER_B, funded(2).address, Verdict.REFUSED),  # B claiming A's agentId
        ("a", PEER_A, funded(3).address, Verdict.REFUSED),  # A's peer id, someone else's key
        ("b", PEER_B, funded(4).address, Verdict.REFUSED),
        ("unknown", PEER_A, funded(1).address, Verdict.REFUSED),
    ],
)
def test_claims(
    registry: tuple[IdentityRegistryBinding, int, int],
    who: str,
    peer_id: str,
    signer: str,
    verdict: Verdict,
) -> None:
    """A claim verifies only when the registry binds its agentId, peer id and signer."""
    binding, agent_a, agent_b = registry
    agent_id = {"a": agent_a, "b": agent_b, "unknown": agent_b + 100}[who]
    assert RegistryVerifier(binding).verify(claim(agent_id, peer_id, signer)) is verdict


def test_chain_down_is_unavailable_not_refused(
    registry: tuple[IdentityRegistryBinding, int, int],
) -> None:
    """An RPC that does not answer leaves the claim undecided, to be asked again later."""
    binding, agent_a, _ = registry
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = ChainClient(Web3(HTTPProvider(f"http://127.0.0.1:{port}")))
    unreachable = IdentityRegistryBinding(dead, binding.address)
    verdict = RegistryVerifier(unreachable).verify(claim(agent_a, PEER_A, funded(1).address))
    assert verdict is Verdict.UNAVAILABLE
