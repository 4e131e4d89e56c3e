"""Every transaction of a devnet run, read back from its chain, with its gas.

The devnet's chain is fresh, so every mined transaction is the run's own:
scanning the blocks gives the complete list without trusting any code path
to have recorded what it sent. Each transaction is named by the contract
and function it called (decoded with the contracts' ABIs), or by the
contract it created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesh_x402.chain.bindings import IdentityRegistryBinding, SettlementBinding, TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.devnet.report import GasLine, TxLine

__all__ = ["gas_by_kind", "scan_transactions"]

_CREATED = {"token": "deploy TestUSDC", "registry": "deploy IdentityRegistry"}


def _kind(
    tx: Any,
    receipt: Any,
    bindings: Sequence[tuple[str, TokenBinding | IdentityRegistryBinding | SettlementBinding]],
) -> str:
    to = tx.get("to")
    data = tx.get("input", tx.get("data", b""))  # eth-tester names it `data`
    if not to:  # anvil says None, eth-tester an empty string
        created = receipt.get("contractAddress")
        for label, binding in bindings:
            if created is not None and binding.address.lower() == str(created).lower():
                return _CREATED.get(label, "deploy MeshSettlement")
        return "deploy (other)"
    for label, binding in bindings:
        if binding.address.lower() == str(to).lower():
            try:
                function, _ = binding.contract.decode_function_input(data)
            except ValueError:
                return f"{label} (unknown call)"
            return f"{label} {function.fn_name}"
    return "transfer" if data in (b"", "0x") else "other"


def scan_transactions(
    client: ChainClient,
    token: TokenBinding,
    registry: IdentityRegistryBinding,
    settlement: SettlementBinding,
) -> list[TxLine]:
    """Every transaction mined on the chain so far, oldest first."""
    bindings: list[tuple[str, TokenBinding | IdentityRegistryBinding | SettlementBinding]] = [
        ("token", token),
        ("registry", registry),
        ("settlement", settlement),
    ]
    w3 = client.w3

    def block(number: int) -> Any:
        return client.run("eth_getBlock", lambda: w3.eth.get_block(number, True))

    def receipt_of(tx_hash: Any) -> Any:
        return client.run(
            "eth_getTransactionReceipt", lambda: w3.eth.get_transaction_receipt(tx_hash)
        )

    lines = []
    for number in range(client.block_number() + 1):
        for tx in block(number)["transactions"]:
            receipt = receipt_of(tx["hash"])
            lines.append(
                TxLine(
                    kind=_kind(tx, receipt, bindings),
                    tx_hash=tx["hash"].to_0x_hex(),
                    block=number,
                    gas_used=int(receipt["gasUsed"]),
                )
            )
    return lines


def gas_by_kind(transactions: Sequence[TxLine]) -> list[GasLine]:
    """Transactions and gas summed per kind, in order of first appearance."""
    totals: dict[str, GasLine] = {}
    for tx in transactions:
        line = totals.get(tx.kind)
        if line is None:
            totals[tx.kind] = GasLine(kind=tx.kind, transactions=1, gas_used=tx.gas_used)
        else:
            totals[tx.kind] = GasLine(
                kind=tx.kind,
                transactions=line.transactions + 1,
                gas_used=line.gas_used + tx.gas_used,
            )
    return list(totals.values())
