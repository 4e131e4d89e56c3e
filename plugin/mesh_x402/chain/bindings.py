"""Typed bindings of the three contracts the mesh uses.

Each binding wraps one deployed contract and turns web3's loosely typed
calls into methods with Python types: addresses as checksummed strings,
amounts as int atomic units, byte strings as bytes. Writes take the local
account that signs them and return the mined receipt (plus what the caller
needs from its events), through `ChainClient.transact`, so confirmations,
nonces and error translation are the client's, never repeated here.

The ABIs come from the checked-in artifacts; the token and registry ABIs
are the external interfaces of USDC and the ERC-8004 reference registry, so
the same bindings drive the real contracts on public chains.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.address import to_checksum_address
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from mesh_x402.chain.artifacts import ArtifactName, load_artifact
from mesh_x402.chain.client import ChainClient, EncodedCall, TransactionReverted
from mesh_x402.chain.eip712 import Signature, TransferAuthorization
from mesh_x402.errors import ChainError

__all__ = [
    "PEER_ID_KEY",
    "SIGNER_KEY",
    "Credit",
    "IdentityRegistryBinding",
    "SettleResult",
    "SettleStatus",
    "SettlementBinding",
    "SettlementItem",
    "TokenBinding",
]

PEER_ID_KEY: Final = "mesh-llm.peer-id"
SIGNER_KEY: Final = "mesh-llm.signer"
_ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"


class _Binding:
    """One deployed contract, reached through a client."""

    artifact: ArtifactName

    def __init__(self, client: ChainClient, address: str) -> None:
        self.client = client
        self.address = to_checksum_address(address)
        self.contract: Contract = client.contract(self.address, load_artifact(self.artifact).abi)

    def _call(self, what: str, name: str, *args: Any) -> Any:
        return self.client.call(self.contract.functions[name](*args), what)


class TokenBinding(_Binding):
    """An EIP-3009 token (USDC, or the local TestUSDC)."""

    artifact = "TestUSDC"

    def name(self) -> str:
        """The EIP-712 domain name (x402's `extra.name`)."""
        return str(self._call("token name()", "name"))

    def version(self) -> str:
        """The EIP-712 domain version (x402's `extra.version`)."""
        return str(self._call("token version()", "version"))

    def decimals(self) -> int:
        return int(self._call("token decimals()", "decimals"))

    def balance_of(self, owner: str) -> int:
        return int(self._call("token balanceOf", "balanceOf", to_checksum_address(owner)))

    def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        """True once the EIP-3009 nonce was used or canceled."""
        return bool(
            self._call(
                "token authorizationState",
                "authorizationState",
                to_checksum_address(authorizer),
                nonce,
            )
        )

    def mint(self, account: LocalAccount, to: str, amount: int) -> TxReceipt:
        """Mint test tokens (TestUSDC only: real USDC has no public mint)."""
        fn = self.contract.functions.mint(to_checksum_address(to), amount)
        return self.client.transact(account, fn, "token mint")


class IdentityRegistryBinding(_Binding):
    """An ERC-8004 identity registry (v2.0.0 interface)."""

    artifact = "IdentityRegistry"

    def register(
        self, account: LocalAccount, uri: str, metadata: Mapping[str, bytes] | None = None
    ) -> tuple[int, TxReceipt]:
        """Mint a new agent to `account` and return its agentId (from `Registered`)."""
        entries = [(key, value) for key, value in (metadata or {}).items()]
        fn = self.contract.get_function_by_signature("register(string,(string,bytes)[])")(
            uri, entries
        )
        receipt = self.client.transact(account, fn, "identity register")
        events = self.contract.events.Registered().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(
                f"register transaction {receipt['transactionHash'].to_0x_hex()} "
                f"emitted {len(events)} Registered events, expected 1"
            )
        return int(events[0]["args"]["agentId"]), receipt

    def exists(self, agent_id: int) -> bool:
        """True when `agent_id` is minted (ownerOf does not revert)."""
        try:
            self.owner_of(agent_id)
        except TransactionReverted:
            return False
        return True

    def owner_of(self, agent_id: int) -> str:
        return to_checksum_address(self._call("identity ownerOf", "ownerOf", agent_id))

    def version(self) -> str:
        return str(self._call("identity getVersion", "getVersion"))

    def get_metadata(self, agent_id: int, key: str) -> bytes:
        return bytes(self._call("identity getMetadata", "getMetadata", agent_id, key))

    def set_metadata(
        self, account: LocalAccount, agent_id: int, key: str, value: bytes
    ) -> TxReceipt:
        fn = self.contract.functions.setMetadata(agent_id, key, value)
        return self.client.transact(account, fn, f"identity setMetadata {key}")

    def token_uri(self, agent_id: int) -> str:
        return str(self._call("identity tokenURI", "tokenURI", agent_id))

    def set_agent_uri(self, account: LocalAccount, agent_id: int, uri: str) -> TxReceipt:
        fn = self.contract.functions.setAgentURI(agent_id, uri)
        return self.client.transact(account, fn, "identity setAgentURI")

    def get_agent_wallet(self, agent_id: int) -> str | None:
        """The agent's payout wallet, or None when unset."""
        wallet = to_checksum_address(
            self._call("identity getAgentWallet", "getAgentWallet", agent_id)
        )
        return None if wallet == _ZERO_ADDRESS else wallet

    def set_agent_wallet(
        self,
        account: LocalAccount,
        agent_id: int,
        new_wallet: str,
        deadline: int,
        proof: Signature,
    ) -> TxReceipt:
        """Set the wallet, with the new wallet's `AgentWalletSet` signature as proof."""
        fn = self.contract.functions.setAgentWallet(
            agent_id, to_checksum_address(new_wallet), deadline, proof.packed
        )
        return self.client.transact(account, fn, "identity setAgentWallet")


class SettleStatus(IntEnum):
    """Per-item outcome of `MeshSettlement.settle` (contract constants)."""

    SETTLED = 0
    NONCE_USED = 1
    """The token's nonce is used or canceled: settled by this contract before (its
    `PaymentSettled` logs say so, see `SettlementBinding.settlement_of`), executed by
    someone else, or canceled by the payer."""
    BAD_SPLIT = 2
    UNKNOWN_AGENT = 3
    NOT_ENTRY_SIGNER = 4
    AUTHORIZATION_FAILED = 5


@dataclass(frozen=True)
class Credit:
    """Atomic units credited to one agent out of one payment."""

    agent_id: int
    amount: int


@dataclass(frozen=True)
class SettlementItem:
    """One x402 payment to settle: the authorization, who gets what, and the refund."""

    authorization: TransferAuthorization
    signature: Signature
    entry_agent_id: int
    receipt_hash: bytes
    credits: Sequence[Credit]
    refund: int = 0

    def as_abi(self) -> tuple[Any, ...]:
        """The `Item` struct as web3 encodes it."""
        auth, sig = self.authorization, self.signature
        payment = (
            to_checksum_address(auth.from_),
            auth.value,
            auth.valid_after,
            auth.valid_before,
            auth.nonce,
            sig.v,
            sig.r,
            sig.s,
        )
        credits = [(c.agent_id, c.amount) for c in self.credits]
        return (payment, self.entry_agent_id, self.receipt_hash, credits, self.refund)


@dataclass(frozen=True)
class SettleResult:
    """What one settle transaction did: a status per item, in order."""

    statuses: list[SettleStatus]
    receipt: TxReceipt = field(repr=False)

    @property
    def tx_hash(self) -> str:
        return self.receipt["transactionHash"].to_0x_hex()


class SettlementBinding(_Binding):
    """The mesh's `MeshSettlement` contract (the x402 `payTo`)."""

    artifact = "MeshSettlement"

    def __init__(self, client: ChainClient, address: str, *, from_block: int = 0) -> None:
        super().__init__(client, address)
        # Event scans start at the contract's deployment block: a public chain's
        # RPC refuses, or times out on, a log query from block 0.
        self.from_block = from_block

    @functools.cached_property
    def _settle_signature(self) -> tuple[bytes, list[str]]:
        """`settle`'s selector and argument types, read from the ABI once."""
        entry = self.contract.get_function_by_name("settle").abi
        return function_abi_to_4byte_selector(entry), get_abi_input_types(entry)

    def settle_function(self, items: Sequence[SettlementItem]) -> EncodedCall:
        """The `settle(items)` call, encoded once: for `preview`, and for callers that
        sign and send it themselves."""
        selector, types = self._settle_signature
        arguments = encode(types, [[item.as_abi() for item in items]])
        return EncodedCall(self.address, selector + arguments, self.contract.abi)

    def settle(self, account: LocalAccount, items: Sequence[SettlementItem]) -> SettleResult:
        """Settle a batch; statuses come from the receipt's `ItemRejected` events."""
        receipt = self.client.transact(
            account, self.settle_function(items), f"settle {len(items)} payments"
        )
        return SettleResult(statuses=self.statuses(receipt, len(items)), receipt=receipt)

    def statuses(self, receipt: TxReceipt, count: int) -> list[SettleStatus]:
        """Per-item statuses of a mined settle transaction of `count` items.

        A transaction cannot return values to its sender, so the statuses are
        rebuilt from the events: every item not rejected was settled.
        """
        statuses = [SettleStatus.SETTLED] * count
        for event in self.contract.events.ItemRejected().process_receipt(receipt, errors=DISCARD):
            statuses[int(event["args"]["index"])] = SettleStatus(int(event["args"]["status"]))
        return statuses

    def preview(self, sender: str, call: EncodedCall) -> list[SettleStatus]:
        """What the `settle` call (`settle_function`) sent by `sender` would answer now
        (an `eth_call`, no gas). The caller keeps the encoding to send it afterwards."""
        what = "preview settle"
        data = self.client.call_encoded(call, what, sender=sender)
        try:
            (codes,) = decode(["uint8[]"], data)
            return [SettleStatus(int(code)) for code in codes]
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"{what}: unreadable answer: {exc}") from None

    def settlement_of(self, receipt_hash: bytes, payer: str, nonce: bytes) -> str | None:
        """The transaction in which this contract settled the authorization (payer, nonce)
        under `receipt_hash`, or None.

        The contract keeps no per-payment record: its `PaymentSettled` logs are the
        record. Only a log whose payer and nonce are the receipt's counts, since
        `settle` does not bind the receipt hash to the authorization (a node could
        name someone else's receipt hash on its own payment); a payment is pulled at
        most once, so at most one log can match.
        """
        payer = to_checksum_address(payer)
        logs = self.client.run(
            "eth_getLogs PaymentSettled",
            lambda: self.contract.events.PaymentSettled().get_logs(
                from_block=self.from_block,
                argument_filters={"receiptHash": receipt_hash, "payer": payer},
            ),
        )
        for log in logs:
            args = log["args"]
            # The RPC filtered on the topics already; checked again as it costs nothing.
            if to_checksum_address(args["payer"]) == payer and bytes(args["nonce"]) == nonce:
                return str(log["transactionHash"].to_0x_hex())
        return None

    def withdrawn(self, agent_id: int) -> int:
        """Everything ever withdrawn for `agent_id` (the sum of its `Withdrawn` events)."""
        logs = self.client.run(
            "eth_getLogs Withdrawn",
            lambda: self.contract.events.Withdrawn().get_logs(
                from_block=self.from_block, argument_filters={"agentId": agent_id}
            ),
        )
        return sum(int(log["args"]["amount"]) for log in logs)

    def withdraw(self, account: LocalAccount, agent_id: int) -> tuple[int, str, TxReceipt]:
        """Pay the agent's credited balance to its agentWallet; return (amount, wallet, receipt)."""
        fn = self.contract.functions.withdraw(agent_id)
        receipt = self.client.transact(account, fn, f"withdraw agent {agent_id}")
        events = self.contract.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
        if not events:
            return 0, "", receipt
        args = events[0]["args"]
        return int(args["amount"]), to_checksum_address(args["wallet"]), receipt

    def balance_of(self, agent_id: int) -> int:
        """Credited to `agent_id` and not yet withdrawn."""
        return int(self._call("settlement balanceOf", "balanceOf", agent_id))

    def token(self) -> str:
        return to_checksum_address(self._call("settlement token()", "token"))

    def identity_registry(self) -> str:
        return to_checksum_address(self._call("settlement identityRegistry()", "identityRegistry"))
