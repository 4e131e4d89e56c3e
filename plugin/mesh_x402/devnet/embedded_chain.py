"""An embedded EVM served over JSON-RPC on 127.0.0.1, for machines where anvil cannot run.

anvil is a Linux x86-64 binary from npm; on another platform (or without
npm) the devnet still needs a chain that several processes (the plugins,
the reconciler, the devnet itself) reach over HTTP. This serves web3's
`EthereumTesterProvider` (eth-tester on py-evm, in this process) with the
standard library's threading HTTP server: one JSON-RPC request (or batch)
per POST, answered under one lock because the tester is not thread-safe.

It is slower than anvil (py-evm interprets every opcode in Python) and
knows only the standard `eth_*` methods, so gas money for the node keys is
sent as plain transfers from the tester's funded account rather than with
`anvil_setBalance`. The chain id is eth-tester's own.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3
from web3._utils.encoding import Web3JsonEncoder

from mesh_x402.chain.client import ChainClient

__all__ = ["EmbeddedChain"]

_MAX_BODY: Final = 8 * 2**20


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the devnet's stderr is for its progress."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if not 0 < length <= _MAX_BODY:
            self._reply(400, {"jsonrpc": "2.0", "id": None, "error": _error("bad body size")})
            return
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            self._reply(400, {"jsonrpc": "2.0", "id": None, "error": _error("not JSON")})
            return
        if isinstance(request, list):
            self._reply(200, [self.server.answer(item) for item in request])
        else:
            self._reply(200, self.server.answer(request))

    def _reply(self, status: int, document: Any) -> None:
        body = json.dumps(document, cls=Web3JsonEncoder).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _error(message: str, code: int = -32600) -> dict[str, Any]:
    return {"code": code, "message": message}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: EthereumTesterProvider) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        # The tester's own middleware (and no other) turns JSON-RPC's hex
        # params into eth-tester calls and its results back into JSON-RPC.
        w3 = Web3(provider, middleware=[])
        self.call = provider.request_func(w3, w3.middleware_onion)
        self.lock = threading.Lock()

    def answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": _error("not a JSON-RPC request")}
        with self.lock:
            try:
                response = dict(self.call(request["method"], request.get("params") or []))
            except Exception as exc:  # noqa: BLE001 - every fault becomes a JSON-RPC error
                response = {"error": _error(str(exc) or type(exc).__name__, -32000)}
        response["jsonrpc"] = "2.0"
        response["id"] = request.get("id")
        return response


class EmbeddedChain:
    """eth-tester behind a JSON-RPC HTTP endpoint; `start()`, then `stop()`."""

    kind: Final = "embedded EVM (eth-tester)"

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._provider: EthereumTesterProvider | None = None
        self.url = ""

    def start(self) -> EmbeddedChain:
        self._provider = EthereumTesterProvider()
        self._server = _Server(self._provider)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-evm", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def deployer(self) -> LocalAccount:
        """The tester's first account (a million ether): deploys and mints."""
        return self._account(0)

    def _account(self, index: int) -> LocalAccount:
        assert self._provider is not None
        tester = self._provider.ethereum_tester
        assert tester is not None
        key = tester.backend.account_keys[index]
        account: LocalAccount = Account.from_key(key.to_bytes())
        return account

    def fund_gas(self, client: ChainClient, address: str, amount: int) -> None:
        """Send `amount` wei to `address` from the tester's second account.

        A plain transfer, because eth-tester has no `anvil_setBalance`; from
        an account nothing else uses, so its nonces are this method's alone.
        """
        payer = self._account(1)
        w3 = client.w3

        def send() -> None:
            tx: dict[str, Any] = {
                "to": Web3.to_checksum_address(address),
                "value": amount,
                "gas": 21_000,
                "gasPrice": w3.eth.gas_price,
                "nonce": w3.eth.get_transaction_count(payer.address, "pending"),
                "chainId": w3.eth.chain_id,
            }
            tx_hash = w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
            w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)

        client.run(f"fund {address} with gas money", send)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.url = ""
