"""IdentityRegistry: the ERC-8004 v2.0.0 external interface, per the spec sheet."""

from __future__ import annotations

from typing import Any

import pytest
from contract_kit import Chain, custom_error, deploy_mock, key, revert_reason, sign_wallet_set
from eth_utils import function_abi_to_4byte_selector, keccak
from web3.types import TxReceipt

# From /work/shared/spec/erc8004.md.
SHEET_SELECTORS = {
    "register()": "0x1aa3a008",
    "register(string)": "0xf2c298be",
    "register(string,(string,bytes)[])": "0x8ea42286",
    "getMetadata(uint256,string)": "0xcb4799f2",
    "setMetadata(uint256,string,bytes)": "0x466648da",
    "setAgentURI(uint256,string)": "0x0af28bd3",
    "getAgentWallet(uint256)": "0x00339509",
    "setAgentWallet(uint256,address,uint256,bytes)": "0x2d1ef5ae",
    "unsetAgentWallet(uint256)": "0x3fddcf19",
    "isAuthorizedOrOwner(address,uint256)": "0xd95e72be",
    "getVersion()": "0x0d8e6e2c",
}
AGENT_WALLET_SET_TYPEHASH = "0x678b53cd718d595370ab070ebf48edfdcd834beac116bf23e625fc7f4d5b7d32"
URI = "https://agent.example/card.json"


def _signature(entry: dict[str, Any]) -> str:
    def kind(param: dict[str, Any]) -> str:
        if param["type"].startswith("tuple"):
            inner = ",".join(kind(c) for c in param["components"])
            return f"({inner}){param['type'][5:]}"
        return str(param["type"])

    return f"{entry['name']}({','.join(kind(p) for p in entry['inputs'])})"


def _topic_names(chain: Chain, receipt: TxReceipt) -> list[str]:
    """Event names in log order, for the registry's own events."""
    by_topic = {
        keccak(text=_signature(e)): e["name"] for e in chain.registry.abi if e["type"] == "event"
    }
    return [by_topic[bytes(log["topics"][0])] for log in receipt["logs"]]


@pytest.fixture
def owner(chain: Chain) -> str:
    return chain.accounts[1]


@pytest.fixture
def stranger(chain: Chain) -> str:
    return chain.accounts[2]


def make_wallet_proof(
    chain: Chain, agent_id: int, token_owner: str, **overrides: Any
) -> dict[str, Any]:
    """Arguments for setAgentWallet, signed by the new wallet unless overridden."""
    wallet = overrides.pop("wallet", key(5))
    signer = overrides.pop("signer", wallet)
    message = {
        "agentId": agent_id,
        "newWallet": wallet.address,
        "owner": token_owner,
        "deadline": chain.now() + 120,
    }
    message.update(overrides)
    return {
        "agentId": message["agentId"],
        "newWallet": message["newWallet"],
        "deadline": message["deadline"],
        "signature": sign_wallet_set(chain, signer, message),
    }


def _set_wallet(chain: Chain, proof: dict[str, Any]) -> Any:
    return chain.registry.functions.setAgentWallet(
        proof["agentId"], proof["newWallet"], proof["deadline"], proof["signature"]
    )


class TestInterface:
    def test_selectors_match_the_sheet(self, chain: Chain) -> None:
        ours = {
            _signature(e): "0x" + function_abi_to_4byte_selector(e).hex()
            for e in chain.registry.abi
            if e["type"] == "function"
        }
        for signature, selector in SHEET_SELECTORS.items():
            assert ours.get(signature) == selector, signature

    def test_typehash_matches_the_sheet(self) -> None:
        text = "AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
        assert "0x" + keccak(text=text).hex() == AGENT_WALLET_SET_TYPEHASH

    def test_erc721_reads_and_version(self, chain: Chain) -> None:
        registry = chain.registry.functions
        assert registry.getVersion().call() == "2.0.0"
        assert (registry.name().call(), registry.symbol().call()) == ("AgentIdentity", "AGENT")
        for interface in ("0x01ffc9a7", "0x80ac58cd", "0x5b5e139f", "0x49064906"):
            assert registry.supportsInterface(bytes.fromhex(interface[2:])).call()
        assert not registry.supportsInterface(b"\xff\xff\xff\xff").call()


class TestRegister:
    def test_ids_start_at_zero(self, chain: Chain, owner: str) -> None:
        assert [chain.register(owner) for _ in range(3)] == [0, 1, 2]
        assert chain.registry.functions.balanceOf(owner).call() == 3
        assert chain.registry.functions.ownerOf(0).call() == owner

    def test_register_without_uri(self, chain: Chain, owner: str) -> None:
        receipt = chain.transact(chain.registry.functions.register(), owner)
        assert _topic_names(chain, receipt) == ["Transfer", "Registered", "MetadataSet"]
        (registered,) = chain.events(chain.registry, "Registered", receipt)
        assert (registered["agentId"], registered["agentURI"], registered["owner"]) == (
            0,
            "",
            owner,
        )

    def test_register_with_uri(self, chain: Chain, owner: str) -> None:
        receipt = chain.transact(chain.registry.functions.register(URI), owner)
        assert _topic_names(chain, receipt) == [
            "Transfer",
            "MetadataUpdate",
            "Registered",
            "MetadataSet",
        ]
        assert chain.registry.functions.tokenURI(0).call() == URI

    def test_register_with_metadata(self, chain: Chain, owner: str) -> None:
        entries = [("mesh-llm.peer-id", b"\xab" * 32), ("mesh-llm.signer", b"\x01" * 20)]
        receipt = chain.transact(chain.registry.functions.register(URI, entries), owner)
        assert _topic_names(chain, receipt) == [
            "Transfer",
            "MetadataUpdate",
            "Registered",
            "MetadataSet",
            "MetadataSet",
            "MetadataSet",
        ]
        metadata = chain.events(chain.registry, "MetadataSet", receipt)
        assert [(m["metadataKey"], m["metadataValue"]) for m in metadata] == [
            ("agentWallet", bytes.fromhex(owner[2:])),
            *entries,
        ]
        assert metadata[1]["indexedMetadataKey"] == keccak(text="mesh-llm.peer-id")
        assert chain.registry.functions.getMetadata(0, "mesh-llm.peer-id").call() == b"\xab" * 32

    def test_wallet_is_the_caller(self, chain: Chain, owner: str) -> None:
        """agentWallet starts as the registrant, as an address and as 20 raw metadata bytes."""
        chain.register(owner)
        assert chain.registry.functions.getAgentWallet(0).call() == owner
        assert chain.registry.functions.getMetadata(0, "agentWallet").call() == bytes.fromhex(
            owner[2:]
        )

    def test_reserved_key_refused_at_registration(self, chain: Chain, owner: str) -> None:
        call = chain.registry.functions.register(URI, [("agentWallet", b"\x01" * 20)])
        assert revert_reason(call, owner) == "reserved key"


class TestMetadata:
    def test_owner_sets_metadata(self, chain: Chain, owner: str) -> None:
        chain.register(owner)
        receipt = chain.transact(chain.registry.functions.setMetadata(0, "k", b"v"), owner)
        (event,) = chain.events(chain.registry, "MetadataSet", receipt)
        assert (event["agentId"], event["metadataKey"], event["metadataValue"]) == (0, "k", b"v")
        assert chain.registry.functions.getMetadata(0, "k").call() == b"v"

    def test_stranger_cannot(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        assert (
            revert_reason(chain.registry.functions.setMetadata(0, "k", b"v"), stranger)
            == "Not authorized"
        )
        assert (
            revert_reason(chain.registry.functions.setMetadata(7, "k", b"v"), stranger)
            == "Not authorized"
        )

    def test_approved_and_operator_can(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        operator = chain.accounts[3]
        chain.transact(chain.registry.functions.approve(stranger, 0), owner)
        chain.transact(chain.registry.functions.setApprovalForAll(operator, True), owner)
        chain.transact(chain.registry.functions.setMetadata(0, "a", b"1"), stranger)
        chain.transact(chain.registry.functions.setMetadata(0, "b", b"2"), operator)
        assert chain.registry.functions.getMetadata(0, "b").call() == b"2"

    def test_reserved_key(self, chain: Chain, owner: str) -> None:
        chain.register(owner)
        call = chain.registry.functions.setMetadata(0, "agentWallet", b"\x01" * 20)
        assert revert_reason(call, owner) == "reserved key"

    def test_agent_uri(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        receipt = chain.transact(chain.registry.functions.setAgentURI(0, "ipfs://new"), owner)
        (event,) = chain.events(chain.registry, "URIUpdated", receipt)
        assert (event["agentId"], event["newURI"], event["updatedBy"]) == (0, "ipfs://new", owner)
        assert chain.registry.functions.tokenURI(0).call() == "ipfs://new"
        assert (
            revert_reason(chain.registry.functions.setAgentURI(0, "x"), stranger)
            == "Not authorized"
        )


class TestAgentWallet:
    def test_set_with_proof(self, chain: Chain, owner: str) -> None:
        chain.register(owner)
        proof = make_wallet_proof(chain, 0, owner)
        receipt = chain.transact(_set_wallet(chain, proof), owner)
        assert chain.registry.functions.getAgentWallet(0).call() == proof["newWallet"]
        (event,) = chain.events(chain.registry, "MetadataSet", receipt)
        assert event["metadataKey"] == "agentWallet"
        assert event["metadataValue"] == bytes.fromhex(proof["newWallet"][2:])

    def test_approved_address_may_set_it(self, chain: Chain, owner: str, stranger: str) -> None:
        """The typed data names the token owner, whoever sends the transaction."""
        chain.register(owner)
        chain.transact(chain.registry.functions.approve(stranger, 0), owner)
        proof = make_wallet_proof(chain, 0, owner)
        chain.transact(_set_wallet(chain, proof), stranger)
        assert chain.registry.functions.getAgentWallet(0).call() == proof["newWallet"]

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            pytest.param({"deadline": 1}, "expired", id="expired"),
            pytest.param({"deadline": 2**40}, "deadline too far", id="too-far"),
            pytest.param({"signer": key(6)}, "invalid wallet sig", id="wrong-signer"),
            pytest.param(
                {"owner": "0x" + "11" * 20}, "invalid wallet sig", id="wrong-owner-in-proof"
            ),
            pytest.param({"agentId": 1}, "invalid wallet sig", id="other-agent-in-proof"),
        ],
    )
    def test_bad_proofs(
        self, chain: Chain, owner: str, overrides: dict[str, Any], reason: str
    ) -> None:
        chain.register(owner)
        chain.register(owner)
        proof = make_wallet_proof(chain, 0, owner, **overrides)
        if overrides.get("agentId") == 1:
            proof["agentId"] = 0
        assert revert_reason(_set_wallet(chain, proof), owner) == reason

    def test_deadline_limit_is_five_minutes(self, chain: Chain, owner: str) -> None:
        chain.register(owner)
        chain.tester.mine_blocks(1)
        now = chain.now()
        # The next block is mined at least one second later, so now + 301 is at most 300 ahead.
        proof = make_wallet_proof(chain, 0, owner, deadline=now + 301)
        chain.transact(_set_wallet(chain, proof), owner)
        too_far = make_wallet_proof(chain, 0, owner, deadline=chain.now() + 400)
        assert revert_reason(_set_wallet(chain, too_far), owner) == "deadline too far"

    def test_zero_wallet_and_stranger(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        proof = make_wallet_proof(chain, 0, owner)
        assert revert_reason(_set_wallet(chain, proof), stranger) == "Not authorized"
        proof["newWallet"] = "0x" + "00" * 20
        assert revert_reason(_set_wallet(chain, proof), owner) == "bad wallet"

    def test_contract_wallet_without_erc1271_is_refused(self, chain: Chain, owner: str) -> None:
        """A contract wallet is asked through ERC-1271; one that cannot answer is refused."""
        chain.register(owner)
        proof = make_wallet_proof(chain, 0, owner)
        proof["newWallet"] = chain.settlement.address
        assert revert_reason(_set_wallet(chain, proof), owner) == "invalid wallet sig"

    def test_contract_wallet_with_erc1271(self, chain: Chain, owner: str, mocks: Any) -> None:
        """A contract wallet proves consent through isValidSignature; a wrong key is refused."""
        chain.register(owner)
        wallet_key = key(8)
        wallet = deploy_mock(chain, mocks, "Erc1271Wallet", wallet_key.address)
        message = {
            "agentId": 0,
            "newWallet": wallet.address,
            "owner": owner,
            "deadline": chain.now() + 120,
        }
        forged = sign_wallet_set(chain, key(9), message)
        set_forged = chain.registry.functions.setAgentWallet(
            0, wallet.address, message["deadline"], forged
        )
        assert revert_reason(set_forged, owner) == "invalid wallet sig"
        proof = sign_wallet_set(chain, wallet_key, message)
        chain.transact(
            chain.registry.functions.setAgentWallet(0, wallet.address, message["deadline"], proof),
            owner,
        )
        assert chain.registry.functions.getAgentWallet(0).call() == wallet.address

    def test_unset(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        assert (
            revert_reason(chain.registry.functions.unsetAgentWallet(0), stranger)
            == "Not authorized"
        )
        receipt = chain.transact(chain.registry.functions.unsetAgentWallet(0), owner)
        assert chain.registry.functions.getAgentWallet(0).call() == "0x" + "00" * 20
        (event,) = chain.events(chain.registry, "MetadataSet", receipt)
        assert (event["metadataKey"], event["metadataValue"]) == ("agentWallet", b"")

    def test_transfer_clears_wallet(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        receipt = chain.transact(chain.registry.functions.transferFrom(owner, stranger, 0), owner)
        assert chain.registry.functions.ownerOf(0).call() == stranger
        assert chain.registry.functions.getAgentWallet(0).call() == "0x" + "00" * 20
        assert chain.registry.functions.getMetadata(0, "agentWallet").call() == b""
        assert _topic_names(chain, receipt) == ["Transfer", "MetadataSet"]
        (event,) = chain.events(chain.registry, "MetadataSet", receipt)
        assert event["metadataValue"] == b""

    def test_unknown_agent(self, chain: Chain, owner: str) -> None:
        expected = custom_error("ERC721NonexistentToken(uint256)", 3)
        assert revert_reason(chain.registry.functions.getAgentWallet(3), owner) == expected


class TestAuthorization:
    def test_is_authorized_or_owner(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        check = chain.registry.functions.isAuthorizedOrOwner
        assert check(owner, 0).call()
        assert not check(stranger, 0).call()
        chain.transact(chain.registry.functions.approve(stranger, 0), owner)
        assert check(stranger, 0).call()
        assert chain.registry.functions.getApproved(0).call() == stranger
        operator = chain.accounts[3]
        chain.transact(chain.registry.functions.setApprovalForAll(operator, True), owner)
        assert check(operator, 0).call()
        assert chain.registry.functions.isApprovedForAll(owner, operator).call()

    def test_unknown_agent_reverts(self, chain: Chain, owner: str) -> None:
        expected = custom_error("ERC721NonexistentToken(uint256)", 42)
        assert (
            revert_reason(chain.registry.functions.isAuthorizedOrOwner(owner, 42), owner)
            == expected
        )

    def test_transfer_needs_approval(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        call = chain.registry.functions.transferFrom(owner, stranger, 0)
        assert revert_reason(call, stranger) == custom_error(
            "ERC721InsufficientApproval(address,uint256)", stranger, 0
        )
        wrong_from = chain.registry.functions.transferFrom(stranger, owner, 0)
        assert revert_reason(wrong_from, owner) == custom_error(
            "ERC721IncorrectOwner(address,uint256,address)", stranger, 0, owner
        )

    def test_approval_is_cleared_by_transfer(self, chain: Chain, owner: str, stranger: str) -> None:
        chain.register(owner)
        chain.transact(chain.registry.functions.approve(stranger, 0), owner)
        chain.transact(chain.registry.functions.transferFrom(owner, chain.accounts[3], 0), stranger)
        assert chain.registry.functions.getApproved(0).call() == "0x" + "00" * 20

    def test_safe_transfer_to_a_contract_without_hook(self, chain: Chain, owner: str) -> None:
        """The receiver check that register's _safeMint also runs for a contract caller."""
        chain.register(owner)
        call = chain.registry.functions.safeTransferFrom(owner, chain.token.address, 0)
        assert revert_reason(call, owner) == custom_error(
            "ERC721InvalidReceiver(address)", chain.token.address
        )
