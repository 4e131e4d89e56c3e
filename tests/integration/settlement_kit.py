"""A settling node on a real anvil: contracts, agents, funded payers, signed payments.

Payments enter through the public store APIs exactly as the gate leaves
them: `Journal.claim` (accepted) then `ReceiptStore.charge_with_receipt`
(chargeable, with the entry node's signed EIP-712 receipt), so the
reconciler sees what it sees in production.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import IdentityRegistryBinding, SettlementBinding, TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import Deployment, deploy
from mesh_x402.chain.eip712 import TransferAuthorization, sign_transfer_authorization
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.receipts import Credit, Receipt, ReceiptDomain, receipt_digest, sign_receipt
from mesh_x402.state import IdentityState, save_identity
from mesh_x402.store.journal import Journal, NewPayment
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["Ledger", "SettleWorld", "make_world", "payer"]

FUNDS = 10**9

Ledger = Callable[[Path], tuple[Journal, ReceiptStore]]
"""The `ledger` fixture: opens a node's journal and receipt store by state folder."""


def payer(index: int) -> LocalAccount:
    """A deterministic payer key (no ether needed: it only signs authorizations)."""
    account: LocalAccount = Account.from_key(keccak(f"payer-{index}".encode()))
    return account


@dataclass
class SettleWorld:
    """Contracts, this node (key, agent, folder) and two peer agents."""

    url: str
    client: ChainClient
    deployment: Deployment
    token: TokenBinding
    registry: IdentityRegistryBinding
    settlement: SettlementBinding
    node: LocalAccount
    agent_id: int
    peers: tuple[int, int]
    folder: Path

    @property
    def config_path(self) -> Path:
        return self.folder / "node.toml"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @functools.cached_property
    def domain(self) -> TokenDomain:
        """The token's EIP-712 domain, read from the chain once: every payment signs with it."""
        token = self.token
        return TokenDomain(token.name(), token.version(), self.client.chain_id, token.address)

    def fund(self, account: LocalAccount, amount: int = FUNDS) -> None:
        self.token.mint(dev_account(0), account.address, amount)

    def pay(
        self,
        receipts: ReceiptStore,
        journal: Journal,
        who: LocalAccount,
        *,
        value: int,
        charge: int,
        credits: Sequence[tuple[int, int]] | None = None,
        valid_before: int | None = None,
        signature: str | None = None,
        entry: int | None = None,
    ) -> tuple[str, bytes]:
        """Journal a signed EIP-3009 payment and its receipt; return (payment id, receipt hash).

        Credits default to the whole charge for this node's agent; `signature`
        replaces the payer's (0x hex) to journal a forged or malformed one;
        `entry` names another entry agent than this node's.
        """
        now = int(time.time())
        nonce = os.urandom(32)
        auth = TransferAuthorization(
            from_=who.address,
            to=self.settlement.address,
            value=value,
            valid_after=0,
            valid_before=valid_before if valid_before is not None else now + 3600,
            nonce=nonce,
        )
        packed = sign_transfer_authorization(
            bytes(who.key),
            auth,
            token_name=self.domain.name,
            token_version=self.domain.version,
            chain_id=self.client.chain_id,
            token=self.token.address,
        )
        payment_id = uuid.uuid4().hex
        journal.claim(
            NewPayment(
                receipt_id=payment_id,
                request_id=f"req-{payment_id}",
                payer=who.address.lower(),
                nonce="0x" + nonce.hex(),
                value=value,
                valid_after=auth.valid_after,
                valid_before=auth.valid_before,
                signature=signature or "0x" + packed.packed.hex(),
                network=f"eip155:{self.client.chain_id}",
                asset=self.token.address,
                pay_to=self.settlement.address,
                model="fake-model",
                x402_version=2,
            ),
            spendable=None,
        )
        split = credits if credits is not None else [(self.agent_id, charge)]
        receipt = Receipt(
            payer=who.address,
            nonce=nonce,
            value=value,
            request_id=f"req-{payment_id}",
            model="fake-model",
            prompt_tokens=10,
            completion_tokens=20,
            price_version=1,
            timestamp=now,
            charge=charge,
            refund=value - charge,
            entry_agent_id=self.agent_id if entry is None else entry,
            credits=tuple(Credit(agent_id=a, amount=m) for a, m in sorted(split)),
            policy="vram-proportional",
        )
        domain = ReceiptDomain(self.client.chain_id, self.settlement.address)
        receipt_hash = receipt_digest(receipt, domain)
        receipts.charge_with_receipt(
            payment_id,
            receipt=receipt,
            receipt_hash=receipt_hash,
            signature=sign_receipt(bytes(self.node.key), receipt, domain),
        )
        return payment_id, receipt_hash


def _write_node(
    folder: Path,
    world_url: str,
    deployment: Deployment,
    node: LocalAccount,
    *,
    batch_size: int,
    extra: str,
    confirmations: int,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "node.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(bytes(node.key).hex() + "\n")
    (folder / "node.toml").write_text(
        "[chain]\n"
        f'rpc = "{world_url}"\n'
        "chain_id = 31337\n"
        f'token = "{deployment.token}"\n'
        f'settlement = "{deployment.settlement}"\n'
        f'identity_registry = "{deployment.identity_registry}"\n'
        f"confirmations = {confirmations}\n"
        "[settlement]\n"
        f"batch_size = {batch_size}\n" + extra,
        encoding="utf-8",
    )


def make_world(
    anvil: Anvil,
    folder: Path,
    *,
    node_index: int = 1,
    batch_size: int = 3,
    extra: str = "",
    confirmations: int = 1,
) -> SettleWorld:
    """Fresh contracts on `anvil`; dev account `node_index` is this node, registered as an agent.

    `extra` is appended to node.toml, after the `[settlement]` keys.
    """
    client = ChainClient.connect(anvil.url, chain_id=31337)
    deployer = dev_account(0)
    deployment = deploy(client, deployer, with_test_token=True, with_identity_registry=True)
    assert deployment.identity_registry is not None
    registry = IdentityRegistryBinding(client, deployment.identity_registry)
    node = dev_account(node_index)
    agent_id, _ = registry.register(node, "data:,node")
    peers = (
        registry.register(dev_account(8), "data:,peer-a")[0],
        registry.register(dev_account(9), "data:,peer-b")[0],
    )
    _write_node(
        folder,
        anvil.url,
        deployment,
        node,
        batch_size=batch_size,
        extra=extra,
        confirmations=confirmations,
    )
    save_identity(
        folder / "state",
        IdentityState(
            agent_id=agent_id, chain_id=31337, identity_registry=deployment.identity_registry
        ),
    )
    return SettleWorld(
        url=anvil.url,
        client=client,
        deployment=deployment,
        token=TokenBinding(client, deployment.token),
        registry=registry,
        settlement=SettlementBinding(client, deployment.settlement),
        node=node,
        agent_id=agent_id,
        peers=peers,
        folder=folder,
    )
