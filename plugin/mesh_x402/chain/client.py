"""The chain adapter: one JSON-RPC connection, local signing, confirmations.

Everything that talks to an Ethereum node goes through `ChainClient`, and
every web3 or transport exception is translated here into the plugin's
`ChainError` tree, so callers (the CLI, the reconciler) handle four cases
with one-line messages instead of web3's zoo:

    ChainError
    ├── RpcUnavailable       the endpoint does not answer ("rpc URL does not answer")
    ├── WrongChain           "chain id 1 but config says 31337"
    ├── NoContractCode       "no contract code at 0x..."
    └── TransactionReverted  a call or transaction reverted (with the revert reason)

Transactions are signed locally (the key never leaves the process and is
never logged), nonces are tracked per sender so back-to-back transactions do
not collide, gas is estimated (a revert shows up there, before anything is
broadcast) and a receipt is awaited with the configured confirmations.

The client is synchronous. A caller on an event loop runs it in a thread
(`asyncio.to_thread`): web3's sync provider would otherwise block every other
request on that loop for the whole round trip.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import requests
from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.rpc import HTTPProvider
from web3.types import Nonce, TxParams, TxReceipt, Wei

from mesh_x402.errors import ChainError, NoContractCode, RpcUnavailable, WrongChain
from mesh_x402.log import Event, get_logger

try:  # the in-process test chain raises its own revert error, not web3's
    from eth_tester.exceptions import TransactionFailed as _TesterReverted
except ImportError:  # pragma: no cover - eth-tester is a test dependency only
    _TesterReverted = ContractLogicError

__all__ = ["ChainClient", "EncodedCall", "SignedTx", "TransactionReverted"]

_T = TypeVar("_T")
_GAS_MARGIN_PERCENT: Final = 20  # estimates are exact on a quiet chain; state may move
_DEFAULT_PRIORITY_FEE: Final = 1_000_000_000  # 1 gwei, when the node cannot suggest one
# How nodes (geth, anvil, erigon) refuse a transaction they already hold.
_ALREADY_KNOWN: Final = ("already known", "already imported", "already exists")

_log = get_logger("chain")


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction, ready to broadcast (and to broadcast again, byte for byte)."""

    sender: str
    nonce: int
    tx_hash: str
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class EncodedCall:
    """A contract call whose calldata was encoded once, for `call_encoded` and `prepare`.

    A web3 `ContractFunction` validates and encodes its arguments again for
    every eth_call, gas estimate and build; for a settle batch of 50 items
    that is about 0.1 s of CPU each time, in the process that also serves
    paid requests.

    Attributes:
        to: the contract.
        data: selector and ABI-encoded arguments.
        abi: the contract's ABI, to name a custom error in a revert.
    """

    to: ChecksumAddress
    data: bytes = field(repr=False)
    abi: Sequence[Mapping[str, Any]] = field(repr=False)

    def transaction(self, params: TxParams) -> TxParams:
        """`params` plus this call's recipient, data and zero value."""
        return {**params, "to": self.to, "data": HexBytes(self.data), "value": Wei(0)}


class TransactionReverted(ChainError):  # noqa: N818 - named like its siblings in errors.py
    """A call or transaction reverted; the message carries the revert reason."""


def _custom_error(data: object, abi: Sequence[Mapping[str, Any]]) -> str | None:
    """Render revert data as `Name(arg, ...)` when it is one of `abi`'s custom errors."""
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        return None
    raw = bytes.fromhex(data[2:])
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [str(arg["type"]) for arg in item.get("inputs", [])]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] == raw[:4]:
            try:
                values = decode(types, raw[4:])
            except (DecodingError, ValueError):
                return str(item["name"])
            return f"{item['name']}({', '.join(str(v) for v in values)})"
    return None


def _revert_data(exc: BaseException) -> str | None:
    """The raw revert data as 0x-hex, from web3's error or eth-tester's message."""
    data = getattr(exc, "data", None)
    if isinstance(data, str):
        return data
    # eth-tester puts undecodable revert data in its message as a bytes literal.
    text = str(exc.args[0]) if exc.args else ""
    text = text.removeprefix("execution reverted: ")
    if text.startswith(("b'", 'b"')):
        try:
            raw = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return "0x" + raw.hex() if isinstance(raw, bytes) else None
    return None


def _reason(exc: BaseException, abi: Sequence[Mapping[str, Any]] = ()) -> str:
    custom = _custom_error(_revert_data(exc), abi)
    if custom is not None:
        return custom
    message = getattr(exc, "message", None) or str(exc)
    return str(message).removeprefix("execution reverted: ").strip() or "no reason given"


def _rpc_message(exc: Web3RPCError) -> str:
    """The node's own error message, not web3's rendering of the whole response."""
    response = exc.rpc_response or {}
    error = response.get("error") if isinstance(response, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc.message)


class ChainClient:
    """A connected chain: reads, local-key transactions and confirmation waits.

    Build it with `ChainClient.connect(url, chain_id=...)` for a node, or
    `ChainClient(Web3(EthereumTesterProvider()))` for the in-process chain.

    Args:
        w3: the web3 instance to use.
        label: how the endpoint is named in errors (its URL).
        confirmations: blocks to wait for after inclusion (1 = included).
        tx_timeout: seconds to wait for a receipt before giving up.
        poll_interval: seconds between receipt and block polls.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        label: str = "in-process chain",
        confirmations: int = 1,
        tx_timeout: float = 120.0,
        poll_interval: float = 0.05,
    ) -> None:
        self.w3 = w3
        self.label = label
        self.confirmations = confirmations
        self._tx_timeout = tx_timeout
        self._poll = poll_interval
        self._chain_id: int | None = None
        self._nonces: dict[str, int] = {}
        self._nonce_lock = threading.Lock()
        # Custom errors of every contract bound so far: a revert bubbling up from a
        # called contract (e.g. the registry under the settlement) is still named.
        self.known_errors: list[Mapping[str, Any]] = []

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        chain_id: int | None = None,
        confirmations: int = 1,
        request_timeout: float = 10.0,
        tx_timeout: float = 120.0,
    ) -> ChainClient:
        """Connect to a JSON-RPC node over HTTP and check it serves `chain_id`.

        Raises:
            RpcUnavailable: nothing answers at `url`.
            WrongChain: it answers with another chain id.
        """
        if not url.startswith(("http://", "https://")):
            raise ChainError(f"rpc {url} is not an http:// or https:// URL")
        # No retries: an RPC that does not answer should say so at once, not after back-off.
        provider = HTTPProvider(
            url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=None
        )
        client = cls(Web3(provider), label=url, confirmations=confirmations, tx_timeout=tx_timeout)
        if chain_id is not None:
            client.check_chain_id(chain_id)
        else:
            _ = client.chain_id
        return client

    @contextmanager
    def _translated(self, what: str, abi: Sequence[Mapping[str, Any]] = ()) -> Iterator[None]:
        """Map web3 and transport exceptions to the ChainError tree."""
        try:
            yield
        except ChainError:
            raise
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            ProviderConnectionError,
            RequestTimedOut,
            ConnectionError,
        ):
            _log.warning(Event.CHAIN_UNAVAILABLE, rpc=self.label, action=what)
            raise RpcUnavailable(f"rpc {self.label} does not answer") from None
        except (ContractLogicError, _TesterReverted) as exc:
            reason = _reason(exc, [*abi, *self.known_errors])
            raise TransactionReverted(f"{what} reverted: {reason}") from None
        except Web3RPCError as exc:
            raise ChainError(f"{what}: rpc {self.label} refused: {_rpc_message(exc)}") from None
        except (Web3Exception, requests.exceptions.RequestException, ValueError) as exc:
            raise ChainError(f"{what} failed: {exc}") from None

    def run(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one web3 read with errors translated (`what` names it in messages)."""
        with self._translated(what):
            return fn()

    @property
    def chain_id(self) -> int:
        """The node's chain id (asked once, then cached)."""
        if self._chain_id is None:
            self._chain_id = self.run("eth_chainId", lambda: int(self.w3.eth.chain_id))
        return self._chain_id

    def check_chain_id(self, expected: int) -> None:
        """Raise WrongChain unless the node serves `expected`."""
        actual = self.chain_id
        if actual != expected:
            raise WrongChain(f"chain id {actual} but config says {expected}")

    def require_code(self, address: str, what: str = "contract") -> None:
        """Raise NoContractCode unless `address` holds code (a deployed contract)."""
        checksummed = to_checksum_address(address)
        code = self.run("eth_getCode", lambda: self.w3.eth.get_code(checksummed))
        if len(code) == 0:
            raise NoContractCode(f"no contract code at {checksummed} ({what})")

    def contract(self, address: str, abi: Sequence[Mapping[str, Any]]) -> Contract:
        """A web3 contract object at `address` (no call is made)."""
        for item in abi:
            if item.get("type") == "error" and item not in self.known_errors:
                self.known_errors.append(item)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=list(abi))

    def call(self, fn: ContractFunction, what: str, *, sender: str | None = None) -> Any:
        """`eth_call` a contract function (as `sender`, if given); reverts become
        TransactionReverted."""
        params: TxParams = {} if sender is None else {"from": to_checksum_address(sender)}
        with self._translated(what, fn.contract_abi):
            return fn.call(params)

    def call_encoded(self, call: EncodedCall, what: str, *, sender: str | None = None) -> bytes:
        """`eth_call` an encoded call (as `sender`, if given); the raw return data.

        Raises:
            TransactionReverted: the call reverted.
        """
        params: TxParams = {} if sender is None else {"from": to_checksum_address(sender)}
        with self._translated(what, call.abi):
            return bytes(self.w3.eth.call(call.transaction(params)))

    def block_number(self) -> int:
        return self.run("eth_blockNumber", lambda: int(self.w3.eth.block_number))

    def _next_nonce(self, address: ChecksumAddress) -> int:
        pending = self.run(
            "eth_getTransactionCount",
            lambda: int(self.w3.eth.get_transaction_count(address, "pending")),
        )
        nonce = max(pending, self._nonces.get(address, 0))
        self._nonces[address] = nonce + 1
        return nonce

    def _fees(self) -> TxParams:
        block = self.run("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:  # a pre-London chain: legacy pricing
            return {"gasPrice": self.run("eth_gasPrice", lambda: self.w3.eth.gas_price)}
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3Exception, ValueError):
            priority = _DEFAULT_PRIORITY_FEE
        # Twice the base fee survives several full blocks of base-fee growth.
        return {
            "maxFeePerGas": Wei(2 * int(base_fee) + priority),
            "maxPriorityFeePerGas": Wei(priority),
        }

    def prepare(
        self,
        account: LocalAccount,
        fn: ContractFunction | ContractConstructor | EncodedCall,
        what: str,
    ) -> SignedTx:
        """Estimate, pick the sender's next nonce and sign `fn`; nothing is broadcast.

        A caller that must survive a crash between signing and broadcasting
        (the reconciler) persists the result first, then calls `broadcast`,
        and can send the very same bytes again after a restart.

        Raises:
            TransactionReverted: gas estimation reverted (nothing would succeed).
            RpcUnavailable / ChainError: the node failed, or the account holds no ether.
        """
        sender = account.address
        # An empty account fails gas estimation with a node-specific riddle
        # ("gas required exceeds allowance: 0"); say what is wrong instead.
        balance = self.run("eth_getBalance", lambda: int(self.w3.eth.get_balance(sender)))
        if balance == 0:
            raise ChainError(
                f"{what}: account {sender} has no ether on chain {self.chain_id} to pay gas"
            )
        with self._nonce_lock:
            abi = fn.contract_abi if isinstance(fn, ContractFunction) else fn.abi
            with self._translated(what, abi):
                params: TxParams = {"from": sender, "chainId": self.chain_id, **self._fees()}
                if isinstance(fn, EncodedCall):
                    gas = int(self.w3.eth.estimate_gas(fn.transaction(params)))
                else:
                    gas = int(fn.estimate_gas(params))
                params["gas"] = gas + gas * _GAS_MARGIN_PERCENT // 100
                params["nonce"] = Nonce(self._next_nonce(sender))
                if isinstance(fn, EncodedCall):
                    tx = fn.transaction(params)
                else:
                    tx = fn.build_transaction(params)
            signed = account.sign_transaction(tx)  # type: ignore[arg-type]
        return SignedTx(
            sender=sender,
            nonce=int(params["nonce"]),
            tx_hash=signed.hash.to_0x_hex(),
            raw=bytes(signed.raw_transaction),
        )

    def broadcast(self, tx: SignedTx, what: str) -> None:
        """Send a signed transaction; a node that already holds it counts as sent.

        Raises:
            RpcUnavailable / ChainError: the node did not take it (then the
                sender's nonce is asked from the node again next time).
        """
        try:
            with self._translated(what):
                self.w3.eth.send_raw_transaction(tx.raw)
        except ChainError as exc:
            if any(marker in str(exc).lower() for marker in _ALREADY_KNOWN):
                return
            self.forget_nonce(tx.sender)
            raise
        _log.info(Event.CHAIN_TX_SENT, action=what, tx=tx.tx_hash, sender=tx.sender)

    def forget_nonce(self, sender: str) -> None:
        """Ask the node for `sender`'s next nonce next time (a signed transaction was
        not sent, or may not have been): a remembered nonce ahead of the chain
        would leave a gap no later transaction could get past."""
        with self._nonce_lock:
            self._nonces.pop(to_checksum_address(sender), None)

    def transact(
        self,
        account: LocalAccount,
        fn: ContractFunction | ContractConstructor | EncodedCall,
        what: str,
    ) -> TxReceipt:
        """Sign `fn` with `account`, send it, and wait for its confirmations.

        Args:
            account: the local key that signs and pays gas.
            fn: a bound contract function or constructor call, or an encoded call.
            what: names the action in errors and logs (never secrets).

        Raises:
            TransactionReverted: gas estimation or the mined transaction reverted.
            RpcUnavailable / ChainError: the node failed or the wait timed out.
        """
        tx = self.prepare(account, fn, what)
        self.broadcast(tx, what)
        receipt = self.wait(tx.tx_hash, what)
        if receipt["status"] != 1:
            raise TransactionReverted(f"{what} reverted in transaction {tx.tx_hash}")
        return receipt

    def receipt_of(self, tx_hash: str) -> TxReceipt | None:
        """The transaction's receipt if it is mined, else None (no waiting)."""
        with self._translated("eth_getTransactionReceipt"):
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except (TransactionNotFound, TimeExhausted):
                return None

    def mined_nonce(self, address: str) -> int:
        """How many transactions of `address` are mined (its next nonce in the latest block)."""
        checksummed = to_checksum_address(address)
        return self.run(
            "eth_getTransactionCount",
            lambda: int(self.w3.eth.get_transaction_count(checksummed, "latest")),
        )

    def wait(self, tx_hash: str, what: str = "transaction") -> TxReceipt:
        """Wait for `tx_hash`'s receipt and `confirmations` blocks on top of it.

        The receipt is read again after the wait, so a transaction re-mined
        in another block by a reorganisation is reported where it ended up.

        Raises:
            ChainError: the receipt or the confirmations did not arrive in time.
        """
        deadline = time.monotonic() + self._tx_timeout
        with self._translated(what):
            receipt = self._poll_receipt(tx_hash, deadline, what)
            target = receipt["blockNumber"] + max(self.confirmations, 1) - 1
            while int(self.w3.eth.block_number) < target:
                self._sleep_until(deadline, f"{what}: {tx_hash} has too few confirmations")
            if self.confirmations > 1:
                receipt = self._poll_receipt(tx_hash, deadline, what)
        _log.info(
            Event.CHAIN_TX_CONFIRMED,
            action=what,
            tx=tx_hash,
            block=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            status=receipt["status"],
        )
        return receipt

    def _poll_receipt(self, tx_hash: str, deadline: float, what: str) -> TxReceipt:
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except (TransactionNotFound, TimeExhausted):
                self._sleep_until(deadline, f"{what}: no receipt for {tx_hash}")

    def _sleep_until(self, deadline: float, message: str) -> None:
        if time.monotonic() >= deadline:
            raise ChainError(f"{message} after {self._tx_timeout:.0f} s")
        time.sleep(self._poll)
