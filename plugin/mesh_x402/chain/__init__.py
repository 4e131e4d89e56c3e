"""The chain layer: everything that reads or writes an Ethereum chain.

Modules, one concept each (import the one you need; importing this package
costs nothing, so `serve` can start before web3 is loaded):

- `client`: the JSON-RPC adapter (errors, local signing, confirmations);
- `bindings`: typed wrappers of the token, identity registry and settlement;
- `eip712`: EIP-3009 transfer and ERC-8004 wallet-proof signatures;
- `deployment`: the `deployment.json` model and the deploy logic;
- `registration`: the ERC-8004 registration file and its `data:` URI;
- `artifacts`: the compiled contracts (ABI and bytecode) the bindings use;
- `anvil`, `npm`: a local anvil node, installed from npm on first use.
"""

from __future__ import annotations

__all__: list[str] = []
