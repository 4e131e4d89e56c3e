"""MeshSettlement: every settle rule, the bad cases, withdrawals and their events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from contract_kit import (
    AUTHORIZATION_FAILED,
    BAD_SPLIT,
    NONCE_USED,
    NOT_ENTRY_SIGNER,
    SETTLED,
    UNKNOWN_AGENT,
    Chain,
    custom_error,
    deploy_mock,
    deploy_revert_reason,
    key,
    make_authorization,
    make_item,
    make_payment,
    revert_of,
    revert_reason,
    sign_authorization,
    sign_cancel,
    sign_wallet_set,
    statuses_of,
)
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

ZERO = "0x" + "00" * 20


@dataclass
class World:
    chain: Chain
    node: str  # entry node: owner and wallet of agent `entry`
    peer: str  # second node: owner and wallet of agent `other`
    stranger: str
    entry: int
    other: int
    payer: LocalAccount

    def settle(self, items: list[tuple], sender: str | None = None) -> tuple[list[int], object]:
        """Settle from the node (or `sender`): (statuses as an eth_call saw them, receipt)."""
        sender = sender or self.node
        statuses = statuses_of(self.chain, items, sender)
        receipt = self.chain.transact(self.chain.settlement.functions.settle(items), sender)
        return statuses, receipt

    def token_balance(self, address: str) -> int:
        return int(self.chain.token.functions.balanceOf(address).call())

    def credited(self, agent_id: int) -> int:
        return int(self.chain.settlement.functions.balanceOf(agent_id).call())

    def nonce_used(self, payment: tuple) -> bool:
        return bool(self.chain.token.functions.authorizationState(payment[0], payment[4]).call())

    def surplus(self) -> int:
        """What the contract holds beyond what it owes the agents."""
        liabilities = int(self.chain.settlement.functions.liabilities().call())
        return self.token_balance(self.chain.settlement.address) - liabilities

    def cancel_on_token(self, payment: tuple) -> None:
        """The payer cancels its authorization's nonce on the token."""
        chain = self.chain
        cancel = sign_cancel(chain, self.payer, payment[4])
        call = chain.token.functions.cancelAuthorization(
            self.payer.address,
            payment[4],
            cancel.v,
            cancel.r.to_bytes(32, "big"),
            cancel.s.to_bytes(32, "big"),
        )
        chain.transact(call, self.stranger)

    def execute_on_token(self, payment: tuple, submitter: str) -> None:
        """Someone other than the settlement contract executes the authorization first."""
        from_, value, after, before, nonce, v, r, s = payment
        settlement = self.chain.settlement.address
        call = self.chain.token.functions.transferWithAuthorization(
            from_, settlement, value, after, before, nonce, v, r, s
        )
        self.chain.transact(call, submitter)


@pytest.fixture
def world(chain: Chain) -> World:
    node, peer, stranger = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    entry = chain.register(node)
    other = chain.register(peer)
    payer = key(1)
    chain.mint(payer.address, 1_000_000)
    return World(chain, node, peer, stranger, entry, other, payer)


class TestSettle:
    def test_split_and_refund(self, world: World) -> None:
        """A settled payment credits each agent, refunds the payer, and uses the token nonce."""
        payment = make_payment(world.chain, world.payer, value=1_000)
        item = make_item(payment, world.entry, [(world.entry, 600), (world.other, 300)], refund=100)

        statuses, _ = world.settle([item])

        assert statuses == [SETTLED]
        assert world.credited(world.entry) == 600
        assert world.credited(world.other) == 300
        assert world.token_balance(world.payer.address) == 1_000_000 - 900
        assert world.token_balance(world.chain.settlement.address) == 900
        assert world.chain.settlement.functions.liabilities().call() == 900
        assert world.nonce_used(payment)

    def test_agent_id_zero_is_a_real_agent(self, world: World) -> None:
        """Ids start at 0, and agent 0 is credited like any other."""
        assert world.entry == 0
        item = make_item(make_payment(world.chain, world.payer), 0)
        statuses, _ = world.settle([item])
        assert statuses == [SETTLED]
        assert world.credited(0) == 1_000

    def test_event_carries_receipt_hash_nonce_credits_and_refund(self, world: World) -> None:
        """One PaymentSettled, found by receipt hash, names the authorization it pulled
        (payer and nonce: the only on-chain record that this contract settled it), the
        credits and the refund."""
        receipt_hash = keccak(b"receipt-1")
        payment = make_payment(world.chain, world.payer, value=1_000)
        item = make_item(
            payment, world.entry, [(world.entry, 700), (world.other, 200)], 100, receipt_hash
        )

        _, receipt = world.settle([item])

        (event,) = world.chain.events(world.chain.settlement, "PaymentSettled", receipt)
        assert event["receiptHash"] == receipt_hash
        assert event["payer"] == world.payer.address
        assert event["nonce"] == payment[4]
        assert event["refund"] == 100
        assert [tuple(c.values()) for c in event["credits"]] == [
            (world.entry, 700),
            (world.other, 200),
        ]

    def test_signer_in_metadata_may_settle(self, world: World) -> None:
        """The entry agent's "mesh-llm.signer" address may settle for it, not only its wallet."""
        signer, owner = world.chain.accounts[4], world.chain.accounts[5]
        agent = world.chain.register(owner, signer=signer)
        item = make_item(make_payment(world.chain, world.payer), agent)
        statuses, _ = world.settle([item], sender=signer)
        assert statuses == [SETTLED]
        assert world.credited(agent) == 1_000

    def test_refunds_of_one_payer_are_summed(self, world: World) -> None:
        """Two items of one payer refund the sum, interleaved with another payer's item."""
        other_payer = key(2)
        world.chain.mint(other_payer.address, 10_000)
        items = [
            make_item(make_payment(world.chain, world.payer, value=1_000), world.entry, refund=100),
            make_item(make_payment(world.chain, world.payer, value=1_000), world.entry, refund=250),
            make_item(make_payment(world.chain, other_payer, value=500), world.entry, refund=500),
            make_item(make_payment(world.chain, world.payer, value=1_000), world.entry, refund=1),
        ]
        statuses, _ = world.settle(items)
        assert statuses == [SETTLED] * 4
        assert world.token_balance(world.payer.address) == 1_000_000 - 3_000 + 351
        assert world.token_balance(other_payer.address) == 10_000
        assert world.credited(world.entry) == 3_000 - 351


class TestRejectedItems:
    @pytest.mark.parametrize(
        ("credits", "refund"),
        [
            pytest.param([(0, 500)], 100, id="short"),
            pytest.param([(0, 900), (1, 200)], 0, id="over"),
            pytest.param([(0, 1)], 1_001, id="refund-above-value"),
            pytest.param([(0, 2**256 - 1), (1, 2)], 0, id="overflowing-credits"),
            pytest.param([], 999, id="no-credit-short"),
        ],
    )
    def test_bad_split(self, world: World, credits: list[tuple[int, int]], refund: int) -> None:
        """credits + refund must equal the authorized value; nothing moves otherwise."""
        payment = make_payment(world.chain, world.payer, value=1_000)
        statuses, _ = world.settle([make_item(payment, world.entry, credits, refund)])
        assert statuses == [BAD_SPLIT]
        assert world.token_balance(world.payer.address) == 1_000_000
        assert not world.chain.token.functions.authorizationState(payment[0], payment[4]).call()

    def test_unknown_credited_agent(self, world: World) -> None:
        payment = make_payment(world.chain, world.payer)
        item = make_item(payment, world.entry, [(world.entry, 500), (999, 500)])
        statuses, _ = world.settle([item])
        assert statuses == [UNKNOWN_AGENT]
        assert world.token_balance(world.payer.address) == 1_000_000

    def test_unknown_entry_agent(self, world: World) -> None:
        item = make_item(make_payment(world.chain, world.payer), 999, [(world.entry, 1_000)])
        statuses, _ = world.settle([item])
        assert statuses == [UNKNOWN_AGENT]

    def test_caller_not_entry_signer(self, world: World) -> None:
        """A node cannot settle items naming another node as their entry."""
        item = make_item(
            make_payment(world.chain, world.payer), world.other, [(world.entry, 1_000)]
        )
        statuses, _ = world.settle([item])
        assert statuses == [NOT_ENTRY_SIGNER]
        assert world.credited(world.entry) == 0
        statuses, _ = world.settle([item], sender=world.stranger)
        assert statuses == [NOT_ENTRY_SIGNER]

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"validBefore": 1}, id="expired"),
            pytest.param({"validAfter": 2**39}, id="not-yet-valid"),
            pytest.param({"value": 2_000_000}, id="payer-lacks-funds"),
        ],
    )
    def test_authorization_the_token_refuses(self, world: World, overrides: dict[str, int]) -> None:
        payment = make_payment(world.chain, world.payer, **overrides)
        statuses, _ = world.settle([make_item(payment, world.entry)])
        assert statuses == [AUTHORIZATION_FAILED]
        assert not world.nonce_used(payment)
        assert world.token_balance(world.payer.address) == 1_000_000
        assert world.credited(world.entry) == 0

    def test_bad_signature(self, world: World) -> None:
        """An authorization signed by someone other than `from` is refused."""
        payment = make_payment(world.chain, world.payer, signer=key(9))
        statuses, _ = world.settle([make_item(payment, world.entry)])
        assert statuses == [AUTHORIZATION_FAILED]
        assert world.token_balance(world.payer.address) == 1_000_000

    def test_rejections_are_emitted_with_index_and_receipt_hash(self, world: World) -> None:
        bad = make_item(
            make_payment(world.chain, world.payer), world.entry, [(world.entry, 1)], 0, b"\x07" * 32
        )
        good = make_item(make_payment(world.chain, world.payer), world.entry)
        _, receipt = world.settle([good, bad])
        (event,) = world.chain.events(world.chain.settlement, "ItemRejected", receipt)
        assert (event["index"], event["receiptHash"], event["status"]) == (
            1,
            b"\x07" * 32,
            BAD_SPLIT,
        )

    def test_mixed_batch_settles_the_good_items(self, world: World) -> None:
        """One bad item never reverts the batch: the others settle, each has its status."""
        chain = world.chain
        items = [
            make_item(make_payment(chain, world.payer, value=100), world.entry),
            make_item(
                make_payment(chain, world.payer, value=100), world.entry, [(world.entry, 99)]
            ),
            make_item(
                make_payment(chain, world.payer, value=100), world.entry, [(world.other, 100)]
            ),
            make_item(make_payment(chain, world.payer, value=100), world.entry, [(404, 100)]),
            make_item(make_payment(chain, world.payer, value=100, validBefore=1), world.entry),
            make_item(make_payment(chain, world.payer, value=100), world.other),
            make_item(make_payment(chain, world.payer, value=100), world.entry, refund=40),
        ]
        statuses, receipt = world.settle(items)
        assert statuses == [
            SETTLED,
            BAD_SPLIT,
            SETTLED,
            UNKNOWN_AGENT,
            AUTHORIZATION_FAILED,
            NOT_ENTRY_SIGNER,
            SETTLED,
        ]
        assert world.credited(world.entry) == 160
        assert world.credited(world.other) == 100
        assert world.token_balance(world.payer.address) == 1_000_000 - 260
        settled = world.chain.events(chain.settlement, "PaymentSettled", receipt)
        assert [e["receiptHash"] for e in settled] == [items[0][2], items[2][2], items[6][2]]


class TestCreditedOnce:
    """Exactly once rests on the token's nonce: a second pull of an authorization fails."""

    def test_same_item_twice_in_one_batch(self, world: World) -> None:
        item = make_item(make_payment(world.chain, world.payer), world.entry)
        statuses, receipt = world.settle([item, item])
        assert statuses == [SETTLED, NONCE_USED]
        assert world.credited(world.entry) == 1_000
        assert world.token_balance(world.payer.address) == 1_000_000 - 1_000
        assert len(world.chain.events(world.chain.settlement, "PaymentSettled", receipt)) == 1
        (rejected,) = world.chain.events(world.chain.settlement, "ItemRejected", receipt)
        assert (rejected["index"], rejected["status"]) == (1, NONCE_USED)

    def test_same_item_in_a_later_batch(self, world: World) -> None:
        item = make_item(make_payment(world.chain, world.payer), world.entry, refund=100)
        world.settle([item])
        statuses, receipt = world.settle([item])
        assert statuses == [NONCE_USED]
        assert world.credited(world.entry) == 900
        assert world.token_balance(world.payer.address) == 1_000_000 - 900
        assert world.chain.events(world.chain.settlement, "PaymentSettled", receipt) == []

    def test_resplit_of_a_settled_payment_is_refused(self, world: World) -> None:
        """A second item for the same authorization with another split is still refused."""
        payment = make_payment(world.chain, world.payer)
        world.settle([make_item(payment, world.entry)])
        statuses, _ = world.settle([make_item(payment, world.entry, [(world.other, 1_000)])])
        assert statuses == [NONCE_USED]
        assert world.credited(world.other) == 0


class TestExecutedBySomeoneElse:
    """An authorization executed (or canceled) outside settle is refused, never credited."""

    def test_front_run_authorization_is_refused_and_its_money_left_as_surplus(
        self, world: World
    ) -> None:
        """The money a front-runner moved in stays unaccounted: no agent is credited, the
        payer gets no refund, and settling it again still credits nothing."""
        payment = make_payment(world.chain, world.payer)
        world.execute_on_token(payment, world.stranger)
        item = make_item(payment, world.entry, [(world.entry, 400), (world.other, 500)], refund=100)

        for _ in range(2):
            statuses, receipt = world.settle([item])
            assert statuses == [NONCE_USED]
            assert world.chain.events(world.chain.settlement, "PaymentSettled", receipt) == []
            assert (world.credited(world.entry), world.credited(world.other)) == (0, 0)
            assert world.token_balance(world.payer.address) == 1_000_000 - 1_000
            assert world.surplus() == 1_000

    def test_canceled_authorization_is_refused(self, world: World) -> None:
        payment = make_payment(world.chain, world.payer)
        world.cancel_on_token(payment)
        statuses, _ = world.settle([make_item(payment, world.entry)])
        assert statuses == [NONCE_USED]
        assert world.token_balance(world.payer.address) == 1_000_000
        assert world.credited(world.entry) == 0

    def test_used_nonce_never_draws_on_surplus(self, world: World) -> None:
        """With a front-runner's money in the contract, neither that payment nor another
        authorization whose nonce was spent elsewhere (or canceled) can claim it."""
        chain = world.chain
        front_run = make_payment(chain, world.payer)
        world.execute_on_token(front_run, world.stranger)
        nonce = b"\x11" * 32
        ours = make_payment(chain, world.payer, nonce=nonce)
        elsewhere = make_authorization(chain, world.payer, to=world.stranger, nonce=nonce)
        signed = sign_authorization(chain, world.payer, elsewhere)
        chain.transact(
            chain.token.functions.transferWithAuthorization(
                *elsewhere.values(),
                signed.v,
                signed.r.to_bytes(32, "big"),
                signed.s.to_bytes(32, "big"),
            ),
            world.stranger,
        )
        canceled = make_payment(chain, world.payer)
        world.cancel_on_token(canceled)

        items = [make_item(p, world.entry) for p in (front_run, ours, canceled)]
        statuses, _ = world.settle(items)

        assert statuses == [NONCE_USED] * 3
        assert world.credited(world.entry) == 0
        assert chain.settlement.functions.liabilities().call() == 0
        assert world.surplus() == 1_000

    def test_forged_item_for_a_used_nonce_moves_nothing(self, world: World) -> None:
        """Another signature over a used nonce meets the token's nonce check first."""
        chain = world.chain
        real = make_payment(chain, world.payer)
        world.settle([make_item(real, world.entry)])
        forged = make_payment(chain, world.payer, nonce=real[4], signer=key(9))
        statuses, _ = world.settle([make_item(forged, world.entry, [(world.other, 1_000)])])
        assert statuses == [NONCE_USED]
        assert (world.credited(world.entry), world.credited(world.other)) == (1_000, 0)
        assert world.token_balance(world.payer.address) == 1_000_000 - 1_000


class TestWithdraw:
    def test_pays_the_agent_wallet(self, world: World) -> None:
        world.settle(
            [make_item(make_payment(world.chain, world.payer), world.entry, [(world.other, 1_000)])]
        )
        settlement = world.chain.settlement

        amount = settlement.functions.withdraw(world.other).call({"from": world.stranger})
        receipt = world.chain.transact(settlement.functions.withdraw(world.other), world.stranger)

        assert amount == 1_000
        assert world.token_balance(world.peer) == 1_000
        assert world.credited(world.other) == 0
        assert settlement.functions.liabilities().call() == 0
        (event,) = world.chain.events(settlement, "Withdrawn", receipt)
        assert (event["agentId"], event["wallet"], event["amount"]) == (
            world.other,
            world.peer,
            1_000,
        )
        assert settlement.functions.withdraw(world.other).call({"from": world.stranger}) == 0

    def test_wallet_cleared_by_nft_transfer(self, world: World) -> None:
        """After the agent NFT changes hands, nothing is paid until the new owner sets a wallet."""
        chain = world.chain
        world.settle([make_item(make_payment(chain, world.payer), world.entry)])
        new_owner = chain.accounts[6]
        chain.transact(
            chain.registry.functions.transferFrom(world.node, new_owner, world.entry), world.node
        )

        reason = revert_reason(chain.settlement.functions.withdraw(world.entry), world.stranger)
        assert reason == custom_error("AgentWalletUnset(uint256)", world.entry)
        assert world.credited(world.entry) == 1_000

        new_wallet = key(7)
        deadline = chain.now() + 60
        proof = sign_wallet_set(
            chain,
            new_wallet,
            {
                "agentId": world.entry,
                "newWallet": new_wallet.address,
                "owner": new_owner,
                "deadline": deadline,
            },
        )
        chain.transact(
            chain.registry.functions.setAgentWallet(
                world.entry, new_wallet.address, deadline, proof
            ),
            new_owner,
        )
        chain.transact(chain.settlement.functions.withdraw(world.entry), world.stranger)
        assert world.token_balance(new_wallet.address) == 1_000

    def test_unknown_agent_reverts(self, world: World) -> None:
        reason = revert_reason(world.chain.settlement.functions.withdraw(999), world.node)
        assert reason == custom_error("ERC721NonexistentToken(uint256)", 999)

    def test_withdraw_never_pays_out_surplus(self, world: World) -> None:
        """A withdrawal pays the agent's credit only; a front-runner's money stays put."""
        chain = world.chain
        world.execute_on_token(make_payment(chain, world.payer), world.stranger)
        world.settle([make_item(make_payment(chain, world.payer, value=300), world.entry)])
        chain.transact(chain.settlement.functions.withdraw(world.entry), world.stranger)
        assert world.token_balance(world.node) == 300
        assert chain.settlement.functions.liabilities().call() == 0
        assert world.surplus() == 1_000


class TestReentrancy:
    """A hostile token that calls back into the settlement meets the lock."""

    def _hostile(self, world: World, mocks: Any) -> tuple[Any, Any]:
        """A MeshSettlement over the hostile token, and that token; the payer holds 10,000."""
        chain = world.chain
        token = deploy_mock(chain, mocks, "ReentrantToken")
        settlement_code = {"MeshSettlement": (chain.settlement.abi, _creation_code())}
        settlement = deploy_mock(
            chain, settlement_code, "MeshSettlement", token.address, chain.registry.address
        )
        chain.transact(token.functions.mint(world.payer.address, 10_000), world.node)
        return token, settlement

    def test_settle_cannot_be_reentered(self, world: World, mocks: Any) -> None:
        token, settlement = self._hostile(world, mocks)
        reenter = settlement.functions.settle([])._encode_transaction_data()
        world.chain.transact(token.functions.arm(settlement.address, reenter), world.node)
        item = make_item(make_payment(world.chain, world.payer), world.entry)
        statuses = settlement.functions.settle([item]).call({"from": world.node, "gas": 5_000_000})
        assert list(statuses) == [AUTHORIZATION_FAILED]

        world.chain.transact(token.functions.arm(ZERO, b""), world.node)
        statuses = settlement.functions.settle([item]).call({"from": world.node, "gas": 5_000_000})
        assert list(statuses) == [SETTLED]

    def test_withdraw_cannot_be_reentered(self, world: World, mocks: Any) -> None:
        token, settlement = self._hostile(world, mocks)
        item = make_item(make_payment(world.chain, world.payer), world.entry)
        world.chain.transact(settlement.functions.settle([item]), world.node)
        reenter = settlement.functions.withdraw(world.entry)._encode_transaction_data()
        world.chain.transact(token.functions.arm(settlement.address, reenter), world.node)
        reason = revert_reason(settlement.functions.withdraw(world.entry), world.node)
        assert reason == custom_error("TokenTransferFailed(address,uint256)", world.node, 1_000)


class TestDeployment:
    def test_views(self, world: World) -> None:
        settlement = world.chain.settlement
        assert settlement.functions.token().call() == world.chain.token.address
        assert settlement.functions.identityRegistry().call() == world.chain.registry.address

    def test_status_codes_are_stable(self, world: World) -> None:
        """Off-chain code and indexers read these numbers; 6 (NOT_FUNDED) is retired."""
        codes = {
            "SETTLED": 0,
            "NONCE_USED": 1,
            "BAD_SPLIT": 2,
            "UNKNOWN_AGENT": 3,
            "NOT_ENTRY_SIGNER": 4,
            "AUTHORIZATION_FAILED": 5,
        }
        views = [
            entry["name"]
            for entry in world.chain.settlement.abi
            if entry.get("type") == "function" and entry["name"].isupper()
        ]
        assert sorted(views) == sorted(codes)
        for name, code in codes.items():
            assert world.chain.settlement.functions[name]().call() == code

    @pytest.mark.parametrize("which", ["token", "registry"])
    def test_constructor_refuses_addresses_without_code(self, world: World, which: str) -> None:
        chain = world.chain
        factory = chain.w3.eth.contract(abi=chain.settlement.abi, bytecode=_creation_code())
        args = {
            "token": (world.stranger, chain.registry.address),
            "registry": (chain.token.address, world.stranger),
        }
        reason = deploy_revert_reason(chain.w3, factory.constructor(*args[which]), world.node)
        assert reason == custom_error("NoCode(address)", world.stranger)

    def test_empty_batch(self, world: World) -> None:
        assert world.settle([])[0] == []


def _creation_code() -> str:
    from mesh_x402.chain.artifacts import load_artifact

    return load_artifact("MeshSettlement").bytecode


class TestEncoding:
    """settle reads items from calldata by offset; broken encodings must not go unnoticed."""

    # selector, items offset, items length, item 0 offset, then the item's 12 head words
    CREDITS_LENGTH_AT = 4 + 32 * 15
    FROM_AT = 4 + 32 * 3

    def _raw_call(self, world: World, items: list[tuple], patch_at: int, word: int) -> str:
        call = world.chain.settlement.functions.settle(items)
        data = bytearray(bytes.fromhex(call._encode_transaction_data()[2:]))
        data[patch_at : patch_at + 32] = word.to_bytes(32, "big")
        tx = {
            "from": world.node,
            "to": world.chain.settlement.address,
            "data": bytes(data),
            "gas": 5_000_000,
        }
        return revert_of(lambda: world.chain.w3.eth.call(tx))

    def test_absurd_credit_count_reverts(self, world: World) -> None:
        item = make_item(make_payment(world.chain, world.payer), world.entry)
        reason = self._raw_call(world, [item], self.CREDITS_LENGTH_AT, 2**200)
        assert reason == custom_error("MalformedItems()")

    def test_dirty_payer_address_is_refused(self, world: World) -> None:
        payment = make_payment(world.chain, world.payer)
        call = world.chain.settlement.functions.settle([make_item(payment, world.entry)])
        data = bytearray(bytes.fromhex(call._encode_transaction_data()[2:]))
        data[self.FROM_AT] = 0xFF  # a high byte of the 32-byte word holding `from`
        tx = {"from": world.node, "to": world.chain.settlement.address, "data": bytes(data)}
        raw = world.chain.w3.eth.call(tx)
        statuses = world.chain.w3.codec.decode(["uint8[]"], raw)[0]
        assert list(statuses) == [AUTHORIZATION_FAILED]
