"""The devnet's local chain: anvil when it runs here, else an embedded EVM.

Both are reached the same way (a JSON-RPC URL on 127.0.0.1) by the plugins,
the reconciler and the devnet; they differ in who deploys (anvil's dev
account 0, the tester's funded account) and in how node keys get gas money
(`anvil_setBalance`, a transfer).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Final, Protocol

from eth_account.signers.local import LocalAccount

from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.client import ChainClient
from mesh_x402.errors import ChainError

__all__ = ["AnvilChain", "LocalChain", "start_local_chain"]


class LocalChain(Protocol):
    """A chain the devnet started and must stop."""

    @property
    def kind(self) -> str:
        """What it is, for the report."""

    @property
    def url(self) -> str:
        """Its JSON-RPC URL (127.0.0.1)."""

    def deployer(self) -> LocalAccount:
        """A funded account that deploys the contracts and mints test tokens."""

    def fund_gas(self, client: ChainClient, address: str, amount: int) -> None:
        """Give `address` `amount` wei of gas money."""

    def stop(self) -> None:
        """End the chain (its process or its server)."""


class AnvilChain:
    """An anvil process (installed from npm on first use)."""

    kind: Final = "anvil"

    def __init__(self) -> None:
        self._anvil = Anvil(accounts=2)

    @property
    def url(self) -> str:
        return self._anvil.url

    def start(self) -> AnvilChain:
        self._anvil.start()
        return self

    def deployer(self) -> LocalAccount:
        return dev_account(0)

    def fund_gas(self, client: ChainClient, address: str, amount: int) -> None:
        # anvil's own method: no faucet transaction to wait for.
        def set_balance() -> None:
            client.w3.provider.make_request(
                "anvil_setBalance",  # type: ignore[arg-type]
                [address, hex(amount)],
            )

        client.run("anvil_setBalance", set_balance)

    def stop(self) -> None:
        self._anvil.stop()


def start_local_chain(note: Callable[[str], None]) -> LocalChain:
    """anvil if it can run here; otherwise the embedded EVM (`note` says why).

    Raises:
        ChainError: neither could start.
    """
    try:
        return AnvilChain().start()
    except ChainError as exc:
        why = f"anvil cannot run here ({exc})"
    if importlib.util.find_spec("eth_tester") is None:
        raise ChainError(
            f"{why}, and the embedded EVM needs eth-tester: pip install 'mesh-x402[devnet]'"
        )
    note(f"{why}; using the embedded EVM (eth-tester) instead")
    from mesh_x402.devnet.embedded_chain import EmbeddedChain  # noqa: PLC0415 - optional

    return EmbeddedChain().start()
