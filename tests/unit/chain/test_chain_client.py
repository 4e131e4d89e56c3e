"""The chain adapter's errors and transactions, on an in-process chain."""

from __future__ import annotations

import socket

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.client import ChainClient, TransactionReverted
from mesh_x402.errors import ChainError, NoContractCode, RpcUnavailable, WrongChain
from web3 import EthereumTesterProvider, Web3

# init code that deploys a one-byte contract (STOP): CODECOPY the byte after itself, RETURN it.
DEPLOYS_STOP = bytes.fromhex("6001600c60003960016000f3" + "00")
# init code that reverts with no data.
REVERTS = bytes.fromhex("60008080fd")


@pytest.fixture
def client() -> ChainClient:
    return ChainClient(Web3(EthereumTesterProvider()))


@pytest.fixture
def funded() -> LocalAccount:
    """eth-tester funds the accounts of private keys 1, 2, 3, ..."""
    account: LocalAccount = Account.from_key((1).to_bytes(32, "big"))
    return account


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestConnect:
    def test_unreachable_rpc_names_the_url(self) -> None:
        """An RPC that does not answer is one clear error naming the URL."""
        url = f"http://127.0.0.1:{closed_port()}"
        with pytest.raises(RpcUnavailable) as info:
            ChainClient.connect(url, chain_id=31337)
        assert str(info.value) == f"rpc {url} does not answer"

    def test_not_an_http_url(self) -> None:
        """A URL web3 cannot use is refused before any connection attempt."""
        with pytest.raises(ChainError, match="is not an http"):
            ChainClient.connect("ws://127.0.0.1:1")

    def test_wrong_chain_id(self, client: ChainClient) -> None:
        """A node on another chain is refused, with both chain ids in the message."""
        actual = client.chain_id
        with pytest.raises(WrongChain) as info:
            client.check_chain_id(actual + 1)
        assert str(info.value) == f"chain id {actual} but config says {actual + 1}"

    def test_right_chain_id(self, client: ChainClient) -> None:
        """The configured chain id passes."""
        client.check_chain_id(client.chain_id)


class TestCode:
    def test_no_code_at_an_account(self, client: ChainClient, funded: LocalAccount) -> None:
        """An externally owned account is not a contract."""
        with pytest.raises(NoContractCode) as info:
            client.require_code(funded.address.lower(), "settlement")
        assert str(info.value) == f"no contract code at {funded.address} (settlement)"


class TestTransact:
    def test_deploy_and_code(self, client: ChainClient, funded: LocalAccount) -> None:
        """A locally signed deployment is mined and leaves code at its address."""
        factory = client.w3.eth.contract(abi=[], bytecode=DEPLOYS_STOP)
        receipt = client.transact(funded, factory.constructor(), "deploy stop")
        assert receipt["status"] == 1
        address = receipt["contractAddress"]
        assert address is not None
        client.require_code(address)

    def test_back_to_back_nonces(self, client: ChainClient, funded: LocalAccount) -> None:
        """Consecutive transactions from one key get consecutive nonces."""
        start = client.w3.eth.get_transaction_count(funded.address)
        factory = client.w3.eth.contract(abi=[], bytecode=DEPLOYS_STOP)
        hashes = [
            client.transact(funded, factory.constructor(), "deploy")["transactionHash"]
            for _ in range(3)
        ]
        nonces = [client.w3.eth.get_transaction(h)["nonce"] for h in hashes]
        assert nonces == [start, start + 1, start + 2]

    def test_revert_is_reported_before_broadcast(
        self, client: ChainClient, funded: LocalAccount
    ) -> None:
        """A reverting transaction fails at estimation: nothing is sent, the nonce is not burnt."""
        before = client.w3.eth.get_transaction_count(funded.address)
        factory = client.w3.eth.contract(abi=[], bytecode=REVERTS)
        with pytest.raises(TransactionReverted, match="deploy broken reverted"):
            client.transact(funded, factory.constructor(), "deploy broken")
        assert client.w3.eth.get_transaction_count(funded.address) == before

    def test_empty_account_is_named(self, client: ChainClient) -> None:
        """A key without ether gets a plain message, not the node's gas riddle."""
        empty = Account.create()
        factory = client.w3.eth.contract(abi=[], bytecode=DEPLOYS_STOP)
        with pytest.raises(ChainError) as info:
            client.transact(empty, factory.constructor(), "deploy")
        assert str(info.value) == (
            f"deploy: account {empty.address} has no ether on chain {client.chain_id} to pay gas"
        )

    def test_confirmations_counted(self, funded: LocalAccount) -> None:
        """With 2 confirmations the wait returns once a block sits on top of the receipt's."""
        w3 = Web3(EthereumTesterProvider())
        factory = w3.eth.contract(abi=[], bytecode=DEPLOYS_STOP)
        receipt = ChainClient(w3).transact(funded, factory.constructor(), "deploy")
        w3.testing.mine(1)
        waited = ChainClient(w3, confirmations=2, tx_timeout=5.0).wait(
            receipt["transactionHash"].to_0x_hex()
        )
        assert waited["blockNumber"] == receipt["blockNumber"]

    def test_confirmation_wait_times_out(self, funded: LocalAccount) -> None:
        """A chain that stops producing blocks ends the wait with a clear error."""
        client = ChainClient(Web3(EthereumTesterProvider()), confirmations=2, tx_timeout=0.3)
        factory = client.w3.eth.contract(abi=[], bytecode=DEPLOYS_STOP)
        with pytest.raises(ChainError, match="too few confirmations"):
            client.transact(funded, factory.constructor(), "deploy")
