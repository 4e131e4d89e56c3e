"""The typed bindings on the in-process chain: ids from events, statuses, decoded errors."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.bindings import (
    PEER_ID_KEY,
    Credit,
    IdentityRegistryBinding,
    SettlementBinding,
    SettlementItem,
    SettleStatus,
    TokenBinding,
)
from mesh_x402.chain.client import ChainClient, TransactionReverted
from mesh_x402.chain.deployment import deploy
from mesh_x402.chain.eip712 import (
    TransferAuthorization,
    sign_agent_wallet_set,
    sign_transfer_authorization,
)
from web3 import EthereumTesterProvider, Web3


def funded(index: int) -> LocalAccount:
    """eth-tester funds the accounts of private keys 1, 2, 3, ..."""
    account: LocalAccount = Account.from_key(index.to_bytes(32, "big"))
    return account


class Chain:
    """A fresh in-process chain with the mesh deployed."""

    def __init__(self) -> None:
        self.client = ChainClient(Web3(EthereumTesterProvider()))
        self.owner = funded(1)
        d = deploy(
            self.client, self.owner, with_test_token=True, with_identity_registry=True, force=True
        )
        self.token = TokenBinding(self.client, d.token)
        self.registry = IdentityRegistryBinding(self.client, d.identity_registry)
        self.settlement = SettlementBinding(self.client, d.settlement, from_block=d.deployed_at)

    def now(self) -> int:
        return int(self.client.w3.eth.get_block("latest")["timestamp"])

    def item(self, payer: LocalAccount, agent_id: int, value: int, refund: int) -> SettlementItem:
        self.token.mint(self.owner, payer.address, value)
        auth = TransferAuthorization(
            from_=payer.address,
            to=self.settlement.address,
            value=value,
            valid_after=0,
            valid_before=self.now() + 3600,
            nonce=secrets.token_bytes(32),
        )
        signature = sign_transfer_authorization(
            payer.key,
            auth,
            token_name=self.token.name(),
            token_version=self.token.version(),
            chain_id=self.client.chain_id,
            token=self.token.address,
        )
        return SettlementItem(
            authorization=auth,
            signature=signature,
            entry_agent_id=agent_id,
            receipt_hash=secrets.token_bytes(32),
            credits=[Credit(agent_id, value - refund)],
            refund=refund,
        )


@pytest.fixture
def chain() -> Chain:
    return Chain()


class TestRegistry:
    def test_ids_come_from_registered_events(self, chain: Chain) -> None:
        """Agent ids start at 0 and count up; each comes from its own Registered event."""
        first, _ = chain.registry.register(chain.owner, "data:a", {PEER_ID_KEY: b"\x01" * 32})
        second, _ = chain.registry.register(funded(2), "data:b")
        assert (first, second) == (0, 1)
        assert chain.registry.owner_of(1) == funded(2).address
        assert chain.registry.get_metadata(0, PEER_ID_KEY) == b"\x01" * 32
        assert chain.registry.get_metadata(1, PEER_ID_KEY) == b""
        assert chain.registry.token_uri(0) == "data:a"
        assert chain.registry.get_agent_wallet(0) == chain.owner.address

    def test_unknown_agent_is_a_decoded_error(self, chain: Chain) -> None:
        """A custom Solidity error is named with its arguments, not shown as hex."""
        assert not chain.registry.exists(7)
        with pytest.raises(
            TransactionReverted, match=r"ownerOf reverted: ERC721NonexistentToken\(7\)"
        ):
            chain.registry.owner_of(7)

    def test_wallet_proof(self, chain: Chain) -> None:
        """The new wallet's EIP-712 signature sets it; a stranger's signature does not."""
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        wallet = funded(3)
        deadline = chain.now() + 120
        kwargs = {
            "agent_id": agent_id,
            "owner": chain.owner.address,
            "deadline": deadline,
            "chain_id": chain.client.chain_id,
            "registry": chain.registry.address,
        }
        forged = sign_agent_wallet_set(funded(4).key, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(TransactionReverted, match="invalid wallet sig"):
            chain.registry.set_agent_wallet(chain.owner, agent_id, wallet.address, deadline, forged)
        proof = sign_agent_wallet_set(wallet.key, **kwargs)  # type: ignore[arg-type]
        chain.registry.set_agent_wallet(chain.owner, agent_id, wallet.address, deadline, proof)
        assert chain.registry.get_agent_wallet(agent_id) == wallet.address


class TestSettlement:
    def test_statuses_per_item(self, chain: Chain) -> None:
        """Each item's status comes back in order; bad items do not stop good ones."""
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        good = chain.item(funded(5), agent_id, 1000, 100)
        bad_split = replace(
            chain.item(funded(6), agent_id, 1000, 0), credits=[Credit(agent_id, 999)]
        )
        result = chain.settlement.settle(chain.owner, [good, bad_split])
        assert result.statuses == [SettleStatus.SETTLED, SettleStatus.BAD_SPLIT]
        assert result.tx_hash.startswith("0x")
        assert chain.settlement.balance_of(agent_id) == 900

        again = chain.settlement.settle(chain.owner, [good])
        assert again.statuses == [SettleStatus.NONCE_USED]
        assert chain.settlement.balance_of(agent_id) == 900

    def test_settlement_of_is_the_transaction_that_pulled_the_authorization(
        self, chain: Chain
    ) -> None:
        """Found by receipt hash, a PaymentSettled log counts only for its own payer and
        nonce: another payment settled under the same receipt hash does not count."""
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        ours = chain.item(funded(5), agent_id, 100, 0)
        other = chain.item(funded(6), agent_id, 100, 0)
        impostor = replace(other, receipt_hash=ours.receipt_hash)
        settlement, auth = chain.settlement, ours.authorization
        assert settlement.settlement_of(ours.receipt_hash, auth.from_, auth.nonce) is None

        tx = chain.settlement.settle(chain.owner, [impostor]).tx_hash
        assert settlement.settlement_of(ours.receipt_hash, auth.from_, auth.nonce) is None
        other_auth = other.authorization
        found = settlement.settlement_of(ours.receipt_hash, other_auth.from_, other_auth.nonce)
        assert found == tx

        tx = chain.settlement.settle(chain.owner, [ours]).tx_hash
        assert settlement.settlement_of(ours.receipt_hash, auth.from_.lower(), auth.nonce) == tx
        assert settlement.settlement_of(ours.receipt_hash, auth.from_, other_auth.nonce) is None

    def test_wrong_caller_is_a_status(self, chain: Chain) -> None:
        """Only the entry agent's signer may settle its items."""
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        item = chain.item(funded(5), agent_id, 10, 0)
        assert chain.settlement.settle(funded(2), [item]).statuses == [
            SettleStatus.NOT_ENTRY_SIGNER
        ]

    def test_withdraw_pays_the_wallet(self, chain: Chain) -> None:
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        chain.settlement.settle(chain.owner, [chain.item(funded(5), agent_id, 700, 0)])
        before = chain.token.balance_of(chain.owner.address)
        amount, wallet, _ = chain.settlement.withdraw(funded(2), agent_id)  # anyone may call
        assert (amount, wallet) == (700, chain.owner.address)
        assert chain.token.balance_of(chain.owner.address) == before + 700
        assert chain.settlement.withdraw(chain.owner, agent_id)[:2] == (0, "")

    def test_event_scans_start_at_from_block(self, chain: Chain) -> None:
        """`settlement_of` and `withdrawn` read logs from the binding's `from_block`
        (the deployment block, from the config) on, not from the chain's first block."""
        agent_id, _ = chain.registry.register(chain.owner, "data:a")
        item = chain.item(funded(5), agent_id, 700, 0)
        tx = chain.settlement.settle(chain.owner, [item]).tx_hash
        chain.settlement.withdraw(chain.owner, agent_id)
        auth = item.authorization

        def seen_from(block: int) -> tuple[str | None, int]:
            scan = SettlementBinding(chain.client, chain.settlement.address, from_block=block)
            settled_in = scan.settlement_of(item.receipt_hash, auth.from_, auth.nonce)
            return settled_in, scan.withdrawn(agent_id)

        assert seen_from(chain.settlement.from_block) == (tx, 700)
        assert seen_from(chain.client.block_number() + 1) == (None, 0)

    def test_withdraw_for_unknown_agent_names_the_registry_error(self, chain: Chain) -> None:
        """An error raised inside the registry, under the settlement, is still decoded."""
        with pytest.raises(TransactionReverted, match=r"ERC721NonexistentToken\(42\)"):
            chain.settlement.withdraw(chain.owner, 42)
