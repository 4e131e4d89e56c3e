"""TestUSDC: FiatTokenV2's EIP-3009 behaviour and the revert strings the x402 SDK maps."""

from __future__ import annotations

from typing import Any

import pytest
from contract_kit import (
    S_MAX,
    SECP256K1_N,
    TOKEN_NAME,
    TOKEN_VERSION,
    Chain,
    deploy_mock,
    key,
    make_authorization,
    revert_reason,
    sign_authorization,
    sign_cancel,
)
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import function_abi_to_4byte_selector, keccak


@pytest.fixture
def payer(chain: Chain) -> LocalAccount:
    account = key(1)
    chain.mint(account.address, 5_000)
    return account


@pytest.fixture
def payee(chain: Chain) -> str:
    return chain.accounts[2]


@pytest.fixture
def relayer(chain: Chain) -> str:
    return chain.accounts[3]


def make_transfer(
    chain: Chain, payer: LocalAccount, payee: str, **overrides: Any
) -> dict[str, Any]:
    """An authorization from `payer` to `payee` and its signature parts; overrides apply to both
    the message and, with `signer`/`s`/`v`, to the signature."""
    signer = overrides.pop("signer", payer)
    primary = overrides.pop("primary", "TransferWithAuthorization")
    s_override = overrides.pop("s", None)
    v_override = overrides.pop("v", None)
    message = make_authorization(chain, payer, to=payee, **overrides)
    signed = sign_authorization(chain, signer, message, primary)
    return {
        "message": message,
        "v": v_override if v_override is not None else signed.v,
        "r": signed.r.to_bytes(32, "big"),
        "s": (s_override if s_override is not None else signed.s).to_bytes(32, "big"),
    }


def _vrs_call(
    chain: Chain, transfer: dict[str, Any], method: str = "transferWithAuthorization"
) -> Any:
    m = transfer["message"]
    args = (m["from"], m["to"], m["value"], m["validAfter"], m["validBefore"], m["nonce"])
    fn = chain.token.get_function_by_signature(
        f"{method}(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
    )
    return fn(*args, transfer["v"], transfer["r"], transfer["s"])


def _bytes_call(chain: Chain, transfer: dict[str, Any], v: int | None = None) -> Any:
    m = transfer["message"]
    signature = transfer["r"] + transfer["s"] + bytes([transfer["v"] if v is None else v])
    fn = chain.token.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )
    return fn(
        m["from"], m["to"], m["value"], m["validAfter"], m["validBefore"], m["nonce"], signature
    )


class TestMetadata:
    def test_erc20_fields(self, chain: Chain) -> None:
        token = chain.token.functions
        assert (token.name().call(), token.version().call()) == (TOKEN_NAME, TOKEN_VERSION)
        assert (token.symbol().call(), token.decimals().call()) == ("USDC", 6)

    def test_domain_separator_is_eip712(self, chain: Chain) -> None:
        """The separator covers (name, version, chainId, this), as wallets compute it."""
        domain = chain.domain(chain.token, TOKEN_NAME, TOKEN_VERSION)
        types = {"Empty": []}
        signable = encode_typed_data(domain_data=domain, message_types=types, message_data={})
        assert chain.token.functions.DOMAIN_SEPARATOR().call() == signable.header

    def test_overload_selectors(self, chain: Chain) -> None:
        selectors = {
            "0x" + function_abi_to_4byte_selector(e).hex()
            for e in chain.token.abi
            if e.get("name") == "transferWithAuthorization"
        }
        assert selectors == {"0xe3ee160e", "0xcf092995"}

    def test_typehashes(self, chain: Chain) -> None:
        token = chain.token.functions
        fields = "(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,"
        fields += "bytes32 nonce)"
        expected = "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
        assert token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH().call().hex() == expected
        assert keccak(text="TransferWithAuthorization" + fields).hex() == expected
        assert token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH().call() == keccak(
            text="ReceiveWithAuthorization" + fields
        )


class TestTransferWithAuthorization:
    def test_happy_path(self, chain: Chain, payer: LocalAccount, payee: str, relayer: str) -> None:
        transfer = make_transfer(chain, payer, payee, value=1_200)
        receipt = chain.transact(_vrs_call(chain, transfer), relayer)

        assert chain.token.functions.balanceOf(payee).call() == 1_200
        assert chain.token.functions.balanceOf(payer.address).call() == 3_800
        nonce = transfer["message"]["nonce"]
        assert chain.token.functions.authorizationState(payer.address, nonce).call()
        (used,) = chain.events(chain.token, "AuthorizationUsed", receipt)
        assert (used["authorizer"], used["nonce"]) == (payer.address, nonce)
        (moved,) = chain.events(chain.token, "Transfer", receipt)
        assert (moved["from"], moved["to"], moved["value"]) == (payer.address, payee, 1_200)

    @pytest.mark.parametrize("v_shift", [0, -27], ids=["v-27-28", "v-0-1"])
    def test_bytes_signature(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str, v_shift: int
    ) -> None:
        """The bytes overload takes r||s||v, with v of 0/1 meaning 27/28."""
        transfer = make_transfer(chain, payer, payee)
        chain.transact(_bytes_call(chain, transfer, v=transfer["v"] + v_shift), relayer)
        assert chain.token.functions.balanceOf(payee).call() == 1_000

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            pytest.param({"validBefore": 1}, "FiatTokenV2: authorization is expired", id="expired"),
            pytest.param(
                {"validAfter": 2**39},
                "FiatTokenV2: authorization is not yet valid",
                id="not-yet-valid",
            ),
            pytest.param({"signer": key(9)}, "FiatTokenV2: invalid signature", id="wrong-signer"),
            pytest.param({"value": 5_001}, "ERC20: transfer amount exceeds balance", id="balance"),
            pytest.param({"v": 29}, "ECRecover: invalid signature 'v' value", id="bad-v"),
        ],
    )
    def test_revert_strings(
        self, chain: Chain, payer: LocalAccount, overrides: dict[str, Any], reason: str
    ) -> None:
        """USDC's words: the x402 SDK maps a failed simulation to a reason by these."""
        transfer = make_transfer(chain, payer, chain.accounts[2], **overrides)
        assert revert_reason(_vrs_call(chain, transfer), chain.accounts[3]) == reason

    def test_valid_window_is_exclusive(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        """validAfter < now < validBefore: a bound equal to the block time is refused."""
        block_time = chain.now() + 1_000
        chain.tester.time_travel(block_time)  # the next block is mined at block_time
        at_before = make_transfer(chain, payer, payee, validBefore=block_time)
        with pytest.raises(AssertionError, match="authorization is expired"):
            chain.transact(_vrs_call(chain, at_before), relayer)
        block_time += 1_000
        chain.tester.time_travel(block_time)
        at_after = make_transfer(chain, payer, payee, validAfter=block_time)
        with pytest.raises(AssertionError, match="authorization is not yet valid"):
            chain.transact(_vrs_call(chain, at_after), relayer)
        block_time += 1_000
        chain.tester.time_travel(block_time)
        inside = make_transfer(
            chain, payer, payee, validAfter=block_time - 1, validBefore=block_time + 1
        )
        chain.transact(_vrs_call(chain, inside), relayer)
        assert chain.token.functions.balanceOf(payee).call() == 1_000

    def test_reuse(self, chain: Chain, payer: LocalAccount, payee: str, relayer: str) -> None:
        transfer = make_transfer(chain, payer, payee)
        chain.transact(_vrs_call(chain, transfer), relayer)
        expected = "FiatTokenV2: authorization is used or canceled"
        assert revert_reason(_vrs_call(chain, transfer), relayer) == expected
        assert revert_reason(_bytes_call(chain, transfer), relayer) == expected

    def test_high_s_is_refused(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        """The malleable twin (n - s, flipped v) of a valid signature is refused."""
        transfer = make_transfer(chain, payer, payee)
        s = int.from_bytes(transfer["s"], "big")
        assert s <= S_MAX
        twin = dict(transfer, s=(SECP256K1_N - s).to_bytes(32, "big"), v=55 - transfer["v"])
        expected = "ECRecover: invalid signature 's' value"
        assert revert_reason(_vrs_call(chain, twin), relayer) == expected

    def test_contract_payer_with_erc1271(
        self, chain: Chain, payee: str, relayer: str, mocks: Any
    ) -> None:
        """With the bytes overload a contract `from` is asked through ERC-1271."""
        wallet_key = key(8)
        wallet = deploy_mock(chain, mocks, "Erc1271Wallet", wallet_key.address)
        chain.mint(wallet.address, 1_000)
        message = make_authorization(chain, wallet_key, to=payee)
        message["from"] = wallet.address
        forged = sign_authorization(chain, key(9), message)
        signed = sign_authorization(chain, wallet_key, message)
        fn = chain.token.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
        )
        args = list(message.values())
        assert (
            revert_reason(fn(*args, bytes(forged.signature)), relayer)
            == "FiatTokenV2: invalid signature"
        )
        chain.transact(fn(*args, bytes(signed.signature)), relayer)
        assert chain.token.functions.balanceOf(payee).call() == 1_000

    def test_bad_signature_length(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        transfer = make_transfer(chain, payer, payee)
        m = transfer["message"]
        fn = chain.token.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
        )
        call = fn(
            m["from"],
            m["to"],
            m["value"],
            m["validAfter"],
            m["validBefore"],
            m["nonce"],
            b"\x01" * 64,
        )
        assert revert_reason(call, relayer) == "ECRecover: invalid signature length"

    def test_signature_bound_to_payee(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        """A relayer cannot redirect a signed authorization to itself."""
        transfer = make_transfer(chain, payer, payee)
        transfer["message"]["to"] = relayer
        assert (
            revert_reason(_vrs_call(chain, transfer), relayer) == "FiatTokenV2: invalid signature"
        )


class TestReceiveAndCancel:
    def test_receive_needs_the_payee_as_caller(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        transfer = make_transfer(chain, payer, payee, primary="ReceiveWithAuthorization")
        call = _vrs_call(chain, transfer, "receiveWithAuthorization")
        assert revert_reason(call, relayer) == "FiatTokenV2: caller must be the payee"
        chain.transact(call, payee)
        assert chain.token.functions.balanceOf(payee).call() == 1_000

    def test_receive_refuses_a_transfer_signature(
        self, chain: Chain, payer: LocalAccount, payee: str
    ) -> None:
        """The two typehashes differ, so a transfer authorization is no receive authorization."""
        transfer = make_transfer(chain, payer, payee)
        call = _vrs_call(chain, transfer, "receiveWithAuthorization")
        assert revert_reason(call, payee) == "FiatTokenV2: invalid signature"

    def test_cancel(self, chain: Chain, payer: LocalAccount, payee: str, relayer: str) -> None:
        transfer = make_transfer(chain, payer, payee)
        nonce = transfer["message"]["nonce"]
        signed = sign_cancel(chain, payer, nonce)
        cancel = chain.token.functions.cancelAuthorization(
            payer.address,
            nonce,
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )
        receipt = chain.transact(cancel, relayer)
        (event,) = chain.events(chain.token, "AuthorizationCanceled", receipt)
        assert (event["authorizer"], event["nonce"]) == (payer.address, nonce)
        used = "FiatTokenV2: authorization is used or canceled"
        assert revert_reason(_vrs_call(chain, transfer), relayer) == used
        assert revert_reason(cancel, relayer) == used

    def test_cancel_needs_the_authorizer(
        self, chain: Chain, payer: LocalAccount, relayer: str
    ) -> None:
        signed = sign_cancel(chain, key(9), b"\x01" * 32)
        cancel = chain.token.functions.cancelAuthorization(
            payer.address,
            b"\x01" * 32,
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )
        assert revert_reason(cancel, relayer) == "FiatTokenV2: invalid signature"


class TestErc20:
    def test_transfer_and_allowance(
        self, chain: Chain, payer: LocalAccount, payee: str, relayer: str
    ) -> None:
        chain.mint(payee, 100)
        token = chain.token.functions
        chain.transact(token.transfer(relayer, 40), payee)
        assert token.balanceOf(relayer).call() == 40
        assert revert_reason(token.transfer(relayer, 61), payee) == (
            "ERC20: transfer amount exceeds balance"
        )
        chain.transact(token.approve(relayer, 50), payee)
        chain.transact(token.transferFrom(payee, relayer, 30), relayer)
        assert token.allowance(payee, relayer).call() == 20
        assert revert_reason(token.transferFrom(payee, relayer, 21), relayer) == (
            "ERC20: transfer amount exceeds allowance"
        )
        assert token.totalSupply().call() == 5_100

    def test_mint_emits_transfer(self, chain: Chain, payee: str) -> None:
        receipt = chain.transact(chain.token.functions.mint(payee, 7), chain.accounts[0])
        (event,) = chain.events(chain.token, "Transfer", receipt)
        assert (event["from"], event["to"], event["value"]) == ("0x" + "00" * 20, payee, 7)
