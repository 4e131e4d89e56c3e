"""Gas per settled payment through MeshSettlement.settle (a benchmark, not a test).

Deploys TestUSDC, IdentityRegistry and MeshSettlement on the embedded py-evm chain
(web3's EthereumTesterProvider: the same gas schedule as anvil, Prague rules) and settles
batches of 1, 10 and 50 x402 payments of 1.000 USDC each, in these shapes:

- credit:         the whole value to the entry agent, no refund;
- credit+refund:  part to the entry agent, the rest refunded to the payer;
- split:          a 2-way credit split (entry + one other agent), no refund;
- split+refund:   a 2-way split and a refund (the project's target shape).

Payers: "distinct" gives every payment its own payer (worst case: every payer balance is
a cold slot, every refund is a transfer); "one" uses one payer for the whole batch (one
client paying for many requests: its balance is warm and its refunds are summed).
Each figure is the batch transaction's gasUsed divided by the batch size, so the 21,000
base cost and the calldata are included. The reference is one plain
transferWithAuthorization transaction to an address that already holds tokens, which is
what an x402 facilitator pays per payment.

    .venv/bin/python bench/gas.py [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.artifacts import load_artifact
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.logs import DISCARD

BATCH_SIZES = (1, 10, 50)
VALUE = 1_000_000  # 1 USDC
REFUND = 250_000
TARGET = 65_239  # the reference facilitator's gas per payment (one transaction each)
SHAPES = {
    "credit": (1, 0),
    "credit+refund": (1, REFUND),
    "split": (2, 0),
    "split+refund": (2, REFUND),
}
_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


class Bench:
    def __init__(self) -> None:
        self.w3 = Web3(EthereumTesterProvider())
        self.deployer, self.node, self.peer, self.relayer = self.w3.eth.accounts[:4]
        self.token = self._deploy("TestUSDC", "USD Coin", "2")
        self.registry = self._deploy("IdentityRegistry")
        self.settlement = self._deploy("MeshSettlement", self.token.address, self.registry.address)
        self.entry = self._register(self.node)
        self.other = self._register(self.peer)
        self._payers = 0
        # Warm-up: the contract, both agents and a payee hold tokens already, as on a live mesh.
        self.settle(self._items(1, "split+refund", "one"))
        self._send(self.token.functions.mint(self.relayer, 1), self.deployer)

    def _deploy(self, name: str, *args: Any) -> Contract:
        artifact = load_artifact(name)  # type: ignore[arg-type]
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self._send(factory.constructor(*args), self.deployer)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)

    def _send(self, call: Any, sender: str) -> Any:
        tx = call.transact({"from": sender, "gas": 29_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        if receipt["status"] != 1:
            raise SystemExit(f"bench transaction reverted: {call}")
        return receipt

    def _register(self, owner: str) -> int:
        receipt = self._send(self.registry.functions.register(), owner)
        (event,) = self.registry.events.Registered().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["agentId"])

    def new_payer(self) -> LocalAccount:
        self._payers += 1
        payer = Account.from_key((0xBE4C4000 + self._payers).to_bytes(32, "big"))
        self._send(self.token.functions.mint(payer.address, 1_000 * VALUE), self.deployer)
        return payer

    def payment(self, payer: LocalAccount, to: str | None = None) -> tuple[Any, ...]:
        message = {
            "from": payer.address,
            "to": to or self.settlement.address,
            "value": VALUE,
            "validAfter": 0,
            "validBefore": 2**40,
            "nonce": secrets.token_bytes(32),
        }
        domain = {
            "name": "USD Coin",
            "version": "2",
            "chainId": self.w3.eth.chain_id,
            "verifyingContract": self.token.address,
        }
        signed = payer.sign_message(
            encode_typed_data(domain_data=domain, message_types=_TYPES, message_data=message)
        )
        return (
            *message.values(),
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )

    def _items(self, n: int, shape: str, payers: str) -> list[tuple[Any, ...]]:
        ways, refund = SHAPES[shape]
        one = self.new_payer()
        items = []
        for _ in range(n):
            payment = self.payment(one if payers == "one" else self.new_payer())
            credited = VALUE - refund
            if ways == 1:
                credits = [(self.entry, credited)]
            else:
                credits = [
                    (self.entry, credited * 6 // 10),
                    (self.other, credited - credited * 6 // 10),
                ]
            items.append(
                (self._payment_args(payment), self.entry, secrets.token_bytes(32), credits, refund)
            )
        return items

    @staticmethod
    def _payment_args(payment: tuple[Any, ...]) -> tuple[Any, ...]:
        # settle's Payment has no `to` field: the payee is always the settlement contract.
        return (payment[0], *payment[2:])

    def settle(self, items: list[tuple[Any, ...]]) -> int:
        statuses = self.settlement.functions.settle(items).call(
            {"from": self.node, "gas": 29_000_000}
        )
        if any(statuses):
            raise SystemExit(f"bench items were rejected: {statuses}")
        return int(self._send(self.settlement.functions.settle(items), self.node)["gasUsed"])

    def per_payment(self, n: int, shape: str, payers: str) -> float:
        return self.settle(self._items(n, shape, payers)) / n

    def plain_transfer(self) -> int:
        """One facilitator-style transferWithAuthorization to a payee that holds tokens."""
        payer = self.new_payer()
        payment = self.payment(payer, to=self.relayer)
        call = self.token.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
        )(*payment)
        return int(self._send(call, self.deployer)["gasUsed"])


def measure() -> dict[str, Any]:
    bench = Bench()
    rows = []
    for payers in ("distinct", "one"):
        for shape in SHAPES:
            row: dict[str, Any] = {"shape": shape, "payers": payers}
            for n in BATCH_SIZES:
                row[str(n)] = round(bench.per_payment(n, shape, payers))
            rows.append(row)
    return {
        "plain_transfer_with_authorization": bench.plain_transfer(),
        "target": TARGET,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    result = measure()
    if parser.parse_args().json:
        print(json.dumps(result, indent=2))
        return
    print("gas per settled payment (batch tx gasUsed / batch size)")
    header = f"{'shape':<15}{'payers':<10}" + "".join(
        f"{'batch ' + str(n):>12}" for n in BATCH_SIZES
    )
    print(header)
    for row in result["rows"]:
        cells = "".join(f"{row[str(n)]:>12,}" for n in BATCH_SIZES)
        print(f"{row['shape']:<15}{row['payers']:<10}{cells}")
    print(f"plain transferWithAuthorization tx: {result['plain_transfer_with_authorization']:,}")
    print(f"target (reference facilitator, per payment): {TARGET:,}")


if __name__ == "__main__":
    main()
