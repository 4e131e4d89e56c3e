"""Test kit for the contracts: an embedded py-evm chain with the three contracts deployed,
fixed keys, and `make_*(**overrides)` builders for EIP-3009 payments and settle items.

Signatures are made here with eth-account's `encode_typed_data` (the wallet code path),
independently of the plugin's own signing helpers, so the tests check the contracts
against the EIP-712 standard rather than against our other code.
"""

from __future__ import annotations

import ast
import importlib.util
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from mesh_x402.chain.artifacts import load_artifact
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

SETTLED, NONCE_USED, BAD_SPLIT, UNKNOWN_AGENT = 0, 1, 2, 3
NOT_ENTRY_SIGNER, AUTHORIZATION_FAILED = 4, 5

TOKEN_NAME, TOKEN_VERSION = "USD Coin", "2"
FAR_FUTURE = 2**40
S_MAX = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_TRANSFER_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
_RECEIVE_TYPES = {"ReceiveWithAuthorization": _TRANSFER_TYPES["TransferWithAuthorization"]}
_CANCEL_TYPES = {
    "CancelAuthorization": [
        {"name": "authorizer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
_WALLET_TYPES = {
    "AgentWalletSet": [
        {"name": "agentId", "type": "uint256"},
        {"name": "newWallet", "type": "address"},
        {"name": "owner", "type": "address"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def key(n: int) -> LocalAccount:
    """A fixed test key: deterministic and distinct for each n."""
    return Account.from_key((0xA11CE000 + n).to_bytes(32, "big"))


@dataclass
class Chain:
    """One embedded chain with TestUSDC, IdentityRegistry and MeshSettlement deployed."""

    w3: Web3
    token: Contract
    registry: Contract
    settlement: Contract
    accounts: list[str] = field(default_factory=list)

    @property
    def tester(self) -> Any:
        return self.w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def transact(self, call: Any, sender: str) -> TxReceipt:
        """Send `call` from `sender` and return the mined receipt (a revert raises)."""
        tx_hash = call.transact({"from": sender, "gas": 25_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"transaction reverted: {revert_reason(call, sender)}"
        return receipt

    def events(self, contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
        """The decoded `name` events of `contract` in `receipt`, as dicts of their args."""
        decoded = contract.events[name]().process_receipt(receipt, errors=DISCARD)
        return [dict(event["args"]) for event in decoded]

    def mint(self, to: str, amount: int) -> None:
        self.transact(self.token.functions.mint(to, amount), self.accounts[0])

    def register(self, owner: str, signer: str | None = None) -> int:
        """Register an agent owned by `owner` (its wallet), optionally naming a signer."""
        if signer is None:
            call = self.registry.functions.register("https://agent.example/card.json")
        else:
            entries = [("mesh-llm.signer", bytes.fromhex(signer[2:]))]
            call = self.registry.functions.register("https://agent.example/card.json", entries)
        receipt = self.transact(call, owner)
        (event,) = self.registry.events.Registered().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["agentId"])

    def domain(self, contract: Contract, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": version,
            "chainId": self.w3.eth.chain_id,
            "verifyingContract": contract.address,
        }


def deploy(w3: Web3 | None = None) -> Chain:
    """Deploy the three contracts on a fresh embedded chain (or on `w3`)."""
    w3 = w3 or Web3(EthereumTesterProvider())
    deployer = w3.eth.accounts[0]

    def _deploy(name: str, *args: Any) -> Contract:
        artifact = load_artifact(name)  # type: ignore[arg-type]
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).transact({"from": deployer})
        address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        return w3.eth.contract(address=address, abi=artifact.abi)

    token = _deploy("TestUSDC", TOKEN_NAME, TOKEN_VERSION)
    registry = _deploy("IdentityRegistry")
    settlement = _deploy("MeshSettlement", token.address, registry.address)
    return Chain(w3, token, registry, settlement, list(w3.eth.accounts))


MOCKS = Path(__file__).resolve().parent / "mocks"
ROOT = Path(__file__).resolve().parents[3]


def compile_mocks() -> dict[str, tuple[list[Any], str]]:
    """Compile the test doubles in mocks/ with the pinned solc: {name: (abi, bytecode)}."""
    spec = importlib.util.spec_from_file_location(
        "build_contracts", ROOT / "tools" / "build_contracts.py"
    )
    assert spec is not None
    assert spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    request = build.standard_input()
    request["sources"] = {
        p.name: {"content": p.read_text(encoding="utf-8")} for p in sorted(MOCKS.glob("*.sol"))
    }
    output = build.compile_sources(request)
    return {
        name: (compiled["abi"], "0x" + compiled["evm"]["bytecode"]["object"])
        for unit in output["contracts"].values()
        for name, compiled in unit.items()
    }


def deploy_mock(
    chain: Chain, mocks: dict[str, tuple[list[Any], str]], name: str, *args: Any
) -> Contract:
    abi, bytecode = mocks[name]
    factory = chain.w3.eth.contract(abi=abi, bytecode=bytecode)
    receipt = chain.transact(factory.constructor(*args), chain.accounts[0])
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=abi)


def sign_typed(
    account: LocalAccount, domain: dict[str, Any], types: dict[str, Any], message: dict[str, Any]
) -> Any:
    return account.sign_message(
        encode_typed_data(domain_data=domain, message_types=types, message_data=message)
    )


def make_authorization(chain: Chain, payer: LocalAccount, **overrides: Any) -> dict[str, Any]:
    """An EIP-3009 TransferWithAuthorization message from `payer` to the settlement contract."""
    message = {
        "from": payer.address,
        "to": chain.settlement.address,
        "value": 1_000,
        "validAfter": 0,
        "validBefore": FAR_FUTURE,
        "nonce": secrets.token_bytes(32),
    }
    message.update(overrides)
    return message


def sign_authorization(
    chain: Chain,
    payer: LocalAccount,
    message: dict[str, Any],
    primary: str = "TransferWithAuthorization",
) -> Any:
    types = _TRANSFER_TYPES if primary == "TransferWithAuthorization" else _RECEIVE_TYPES
    return sign_typed(payer, chain.domain(chain.token, TOKEN_NAME, TOKEN_VERSION), types, message)


def sign_cancel(chain: Chain, payer: LocalAccount, nonce: bytes) -> Any:
    message = {"authorizer": payer.address, "nonce": nonce}
    return sign_typed(
        payer, chain.domain(chain.token, TOKEN_NAME, TOKEN_VERSION), _CANCEL_TYPES, message
    )


def sign_wallet_set(chain: Chain, wallet: LocalAccount, message: dict[str, Any]) -> bytes:
    domain = chain.domain(chain.registry, "ERC8004IdentityRegistry", "1")
    return bytes(sign_typed(wallet, domain, _WALLET_TYPES, message).signature)


def make_payment(
    chain: Chain, payer: LocalAccount, *, signer: LocalAccount | None = None, **overrides: Any
) -> tuple:
    """A `Payment` tuple for settle: the authorization fields plus payer's (v, r, s).

    `signer` signs instead of the payer (a bad signature); overrides change the message.
    """
    message = make_authorization(chain, payer, **overrides)
    signed = sign_authorization(chain, signer or payer, message)
    return (
        message["from"],
        message["value"],
        message["validAfter"],
        message["validBefore"],
        message["nonce"],
        signed.v,
        signed.r.to_bytes(32, "big"),
        signed.s.to_bytes(32, "big"),
    )


def make_item(
    payment: tuple,
    entry: int,
    credits: list[tuple[int, int]] | None = None,
    refund: int = 0,
    receipt_hash: bytes | None = None,
) -> tuple:
    """An `Item` for settle; by default the whole value is credited to the entry agent."""
    if credits is None:
        credits = [(entry, payment[1] - refund)]
    return (payment, entry, receipt_hash or secrets.token_bytes(32), credits, refund)


def statuses_of(chain: Chain, items: list[tuple], sender: str) -> list[int]:
    """What settle would return for `items` now (an eth_call, nothing is mined)."""
    return list(chain.settlement.functions.settle(items).call({"from": sender, "gas": 25_000_000}))


def revert_reason(call: Any, sender: str) -> str:
    """The revert string, or the 0x-hex custom error data, of `call` sent from `sender`."""
    return revert_of(lambda: call.call({"from": sender, "gas": 25_000_000}))


def deploy_revert_reason(w3: Web3, constructor: Any, sender: str) -> str:
    """Like revert_reason, for a contract creation (`factory.constructor(...)`)."""
    tx = constructor.build_transaction({"from": sender, "gas": 10_000_000})
    return revert_of(lambda: w3.eth.call(tx))


def revert_of(run: Any) -> str:
    """The revert string or 0x-hex custom error data raised by `run()`."""
    try:
        run()
    except ContractCustomError as exc:
        return str(exc.data)
    except ContractLogicError as exc:
        return str(exc.message)
    except TransactionFailed as exc:
        # eth-tester words a custom error as the repr of its bytes: "execution reverted: b'...'"
        payload = exc.args[0] if exc.args else b""
        if isinstance(payload, str):
            payload = payload.removeprefix("execution reverted: ")
            if payload.startswith(("b'", 'b"')):
                payload = ast.literal_eval(payload)
        if isinstance(payload, bytes):
            return "0x" + payload.hex()
        return str(payload)
    raise AssertionError("the call did not revert")


def custom_error(signature: str, *args: Any) -> str:
    """The 0x-hex revert data of a Solidity custom error, e.g. ("AgentWalletUnset(uint256)", 3)."""
    types = signature[signature.index("(") + 1 : -1].split(",") if "()" not in signature else []
    return "0x" + (keccak(text=signature)[:4] + abi_encode(types, list(args))).hex()
