"""The chain layer's public surface: what other parts of the plugin may import."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "mesh_x402.chain.anvil": {
        "ANVIL_PACKAGE",
        "DEV_MNEMONIC",
        "Anvil",
        "dev_account",
        "find_anvil",
    },
    "mesh_x402.chain.npm": {"cache_dir", "npm_install"},
    "mesh_x402.chain.client": {"ChainClient", "EncodedCall", "SignedTx", "TransactionReverted"},
    "mesh_x402.chain.bindings": {
        "PEER_ID_KEY",
        "SIGNER_KEY",
        "Credit",
        "IdentityRegistryBinding",
        "SettleResult",
        "SettleStatus",
        "SettlementBinding",
        "SettlementItem",
        "TokenBinding",
    },
    "mesh_x402.chain.eip712": {
        "AGENT_WALLET_SET_TYPEHASH",
        "AGENT_WALLET_SET_TYPES",
        "REGISTRY_DOMAIN_NAME",
        "REGISTRY_DOMAIN_VERSION",
        "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
        "TRANSFER_WITH_AUTHORIZATION_TYPES",
        "Signature",
        "TransferAuthorization",
        "agent_wallet_set_digest",
        "agent_wallet_set_typed_data",
        "sign_agent_wallet_set",
        "sign_transfer_authorization",
        "transfer_authorization_digest",
        "transfer_authorization_typed_data",
    },
    "mesh_x402.chain.deployment": {
        "LOCAL_CHAIN_IDS",
        "TEST_TOKEN_NAME",
        "TEST_TOKEN_VERSION",
        "Deployment",
        "DeploymentRefused",
        "deploy",
        "load_deployment",
        "save_deployment",
    },
    "mesh_x402.chain.registration": {
        "DATA_URI_PREFIX",
        "REGISTRATION_TYPE",
        "X402_PATHS",
        "agent_registry_id",
        "build_registration",
        "decode_data_uri",
        "encode_data_uri",
        "gateway_endpoints",
    },
    "mesh_x402.state": {
        "IDENTITY_FILE",
        "IdentityState",
        "load_identity",
        "save_identity",
        "write_atomic",
    },
}


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_exports_are_pinned(module_name: str) -> None:
    """`__all__` lists exactly the public names, and each of them exists."""
    module = importlib.import_module(module_name)
    assert set(module.__all__) == EXPORTS[module_name]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_package_import_is_free() -> None:
    """Importing `mesh_x402.chain` exports nothing, so `serve` can import it before web3."""
    assert importlib.import_module("mesh_x402.chain").__all__ == []
