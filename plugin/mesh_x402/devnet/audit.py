"""The devnet's invariants, computed from the chain's events and the nodes' journals.

Nothing here is assumed from what the run meant to do: each payment is
looked up in its entry node's journal (state, authorized value, charge,
tokens) and its receipt store (receipt hash, credits), and then on chain
(`PaymentSettled` events of the settlement contract with the payer and nonce
they settled, the token's `authorizationState`, `Withdrawn` events and
balances). The client
side (the SDK's signed authorization, the payment response) is compared
with both.

Checks (each one line of the report and one key of `invariants`):
    all_requests_paid                      every planned request was paid and answered
    charge_within_authorization            charge <= authorized value, and the journal's
                                           value is the one the client signed
    credits_plus_refund_equal_authorized   per settled payment, on chain
    every_accepted_payment_settled_once    one PaymentSettled per accepted payment, of its
                                           authorization (payer, nonce), no other, journal
                                           `settled` with that transaction
    released_payments_never_executed       a released authorization was never used
    no_payment_left_in_flight              no journal holds an `accepted` payment
    agent_credits_match_chain              per agent: credits in events == withdrawn + balance
    acknowledged_credits_on_chain          per node (its reconciler's check): every receipt it
                                           signed or acknowledged is settled, none short-paid
    withdrawals_reached_agent_wallets      each agentWallet holds exactly what was withdrawn
    payer_balances_match                   each client holds funded - what it was charged
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh_x402.chain.bindings import SettlementBinding, TokenBinding
from mesh_x402.chain.reconciler import CreditCheck
from mesh_x402.devnet.clients import Exchange
from mesh_x402.devnet.report import AgentLine, Check, ClientLine, RequestLine
from mesh_x402.devnet.topology import PlannedRequest
from mesh_x402.store.journal import Journal, PaymentRecord, PaymentState
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["Audit", "AuditClient", "AuditNode", "SettledEvent", "audit", "settled_events"]


@dataclass(frozen=True)
class AuditNode:
    """A node as the audit needs it.

    Attributes:
        credit_check: the node's own reconciler's comparison of its on-chain
            credits with the receipts it signed or acknowledged (None: none made).
    """

    name: str
    agent_id: int
    wallet: str
    state_dir: Path
    credit_check: CreditCheck | None = None


@dataclass(frozen=True)
class AuditClient:
    """A paying client: its address and how many tokens it was minted."""

    name: str
    address: str
    funded: int


@dataclass(frozen=True)
class SettledEvent:
    """One `PaymentSettled` event."""

    receipt_hash: str
    payer: str
    nonce: str
    refund: int
    credits: tuple[tuple[int, int], ...]
    tx_hash: str

    @property
    def credited(self) -> int:
        return sum(amount for _, amount in self.credits)


@dataclass
class _Payment:
    """One accepted payment, from its entry node's journal and receipt store."""

    node: str
    record: PaymentRecord
    receipt_hash: str | None


@dataclass
class Audit:
    """What the audit found: report lines and the checks."""

    requests: list[RequestLine] = field(default_factory=list)
    clients: list[ClientLine] = field(default_factory=list)
    agents: list[AgentLine] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    settled_events: list[SettledEvent] = field(default_factory=list)

    def check(self, name: str, problems: Sequence[str], ok_detail: str) -> None:
        """Record a check: kept when `problems` is empty, else the first few problems."""
        if problems:
            shown = "; ".join(problems[:3])
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            self.checks.append(Check(name=name, ok=False, detail=shown + more))
        else:
            self.checks.append(Check(name=name, ok=True, detail=ok_detail))


def _hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def settled_events(settlement: SettlementBinding) -> list[SettledEvent]:
    """Every `PaymentSettled` event of the settlement contract (since its `from_block`)."""
    logs = settlement.client.run(
        "eth_getLogs PaymentSettled",
        lambda: settlement.contract.events.PaymentSettled().get_logs(
            from_block=settlement.from_block
        ),
    )
    events = []
    for log in logs:
        args = log["args"]
        # web3 decodes each Credit struct as a mapping keyed by field name.
        credits = tuple((int(c["agentId"]), int(c["amount"])) for c in args["credits"])
        events.append(
            SettledEvent(
                receipt_hash=_hex(args["receiptHash"]),
                payer=str(args["payer"]).lower(),
                nonce=_hex(args["nonce"]),
                refund=int(args["refund"]),
                credits=credits,
                tx_hash=log["transactionHash"].to_0x_hex(),
            )
        )
    return events


def _read_journals(
    nodes: Sequence[AuditNode], exchanges: Sequence[tuple[PlannedRequest, Exchange]]
) -> tuple[dict[str, _Payment], Counter[str]]:
    """Payments by receipt id (from the clients' payment responses), and state counts."""
    payments: dict[str, _Payment] = {}
    counts: Counter[str] = Counter()
    for index, node in enumerate(nodes):
        with Journal.in_state_dir(node.state_dir) as journal:
            store = ReceiptStore(journal)
            for state in PaymentState:
                counts[state.value] += journal.count(state)
            for planned, exchange in exchanges:
                receipt_id = exchange.receipt_id
                if planned.entry != index or receipt_id is None:
                    continue
                record = journal.get(receipt_id)
                if record is None:
                    continue
                stored = store.for_payment(receipt_id)
                payments[receipt_id] = _Payment(
                    node=node.name,
                    record=record,
                    receipt_hash=None if stored is None else _hex(stored.receipt_hash),
                )
    return payments, counts


def audit(
    *,
    settlement: SettlementBinding,
    token: TokenBinding,
    nodes: Sequence[AuditNode],
    clients: Sequence[AuditClient],
    exchanges: Sequence[tuple[PlannedRequest, Exchange]],
) -> Audit:
    """Compute the report's lines and checks.

    Args:
        settlement, token: the deployed contracts (event scans start at the
            settlement binding's `from_block`).
        nodes: every node, in index order (a request's `entry` is an index).
        clients: every paying client, in index order.
        exchanges: each planned request with what its client saw.
    """
    result = Audit()
    payments, counts = _read_journals(nodes, exchanges)
    events = settled_events(settlement)
    result.settled_events = events
    by_hash: defaultdict[str, list[SettledEvent]] = defaultdict(list)
    for event in events:
        by_hash[event.receipt_hash].append(event)

    _request_lines(
        result,
        nodes=nodes,
        clients=clients,
        exchanges=exchanges,
        payments=payments,
        by_hash=by_hash,
    )
    accepted = [p for p in payments.values() if p.record.state is not PaymentState.RELEASED]
    released = [p for p in payments.values() if p.record.state is PaymentState.RELEASED]

    unpaid = [
        f"request {p.index}: {e.error or f'HTTP {e.status}'}"
        for p, e in exchanges
        if e.status != 200 or e.error is not None or e.receipt_id not in payments
    ]
    result.check(
        "all_requests_paid",
        unpaid,
        f"{len(exchanges)} of {len(exchanges)} requests paid, answered and journalled",
    )
    _check_charges(result, exchanges, payments)
    _check_settlement(
        result,
        accepted=accepted,
        by_hash=by_hash,
        events=events,
        counts=counts,
    )
    problems = [
        f"{p.record.receipt_id} released but its authorization was used"
        for p in released
        if token.authorization_state(p.record.payer, bytes.fromhex(p.record.nonce[2:]))
    ]
    result.check(
        "released_payments_never_executed",
        problems,
        f"{len(released)} released payment(s), none executed on the token",
    )
    in_flight = counts[PaymentState.ACCEPTED.value]
    result.check(
        "no_payment_left_in_flight",
        [f"{in_flight} payment(s) still `accepted` in the journals"] if in_flight else [],
        "no journal holds an accepted payment",
    )
    _agents(result, nodes, events, settlement, token)
    _clients(result, clients, events, token)
    return result


def _request_lines(
    result: Audit,
    *,
    nodes: Sequence[AuditNode],
    clients: Sequence[AuditClient],
    exchanges: Sequence[tuple[PlannedRequest, Exchange]],
    payments: dict[str, _Payment],
    by_hash: dict[str, list[SettledEvent]],
) -> None:
    for planned, exchange in exchanges:
        payment = payments.get(exchange.receipt_id or "")
        record = None if payment is None else payment.record
        settled = by_hash.get(payment.receipt_hash or "", []) if payment is not None else []
        credits = dict(settled[0].credits) if len(settled) == 1 else {}
        result.requests.append(
            RequestLine(
                index=planned.index,
                client=clients[planned.client].name,
                entry=nodes[planned.entry].name,
                model=planned.model,
                stream=planned.stream,
                status=exchange.status,
                receipt_id=exchange.receipt_id,
                authorized=exchange.authorized,
                charged=None if record is None else record.charge,
                prompt_tokens=None if record is None else record.prompt_tokens,
                completion_tokens=None if record is None else record.completion_tokens,
                credits=credits,
                error=exchange.error,
            )
        )


def _check_charges(
    result: Audit,
    exchanges: Sequence[tuple[PlannedRequest, Exchange]],
    payments: dict[str, _Payment],
) -> None:
    problems = []
    for planned, exchange in exchanges:
        payment = payments.get(exchange.receipt_id or "")
        if payment is None:
            continue
        record = payment.record
        if exchange.authorized != record.value:
            problems.append(
                f"request {planned.index}: signed {exchange.authorized}, journal {record.value}"
            )
        if record.charge is not None and record.charge > record.value:
            problems.append(
                f"request {planned.index}: charge {record.charge} > authorized {record.value}"
            )
        answered = (exchange.settle or {}).get("amount")
        if not planned.stream and answered is not None and str(record.charge) != answered:
            problems.append(
                f"request {planned.index}: PAYMENT-RESPONSE says {answered}, "
                f"journal {record.charge}"
            )
    result.check(
        "charge_within_authorization",
        problems,
        "every charge <= its authorization; client, payment response and journal agree",
    )


def _check_settlement(
    result: Audit,
    *,
    accepted: list[_Payment],
    by_hash: dict[str, list[SettledEvent]],
    events: list[SettledEvent],
    counts: Counter[str],
) -> None:
    split_problems: list[str] = []
    once_problems: list[str] = []
    known: set[str] = set()
    for payment in accepted:
        record = payment.record
        if payment.receipt_hash is None:
            once_problems.append(f"{record.receipt_id} ({payment.node}) has no signed receipt")
            continue
        known.add(payment.receipt_hash)
        found = by_hash.get(payment.receipt_hash, [])
        if len(found) != 1:
            once_problems.append(f"{record.receipt_id}: {len(found)} PaymentSettled events")
            continue
        event = found[0]
        if event.credited + event.refund != record.value:
            split_problems.append(
                f"{record.receipt_id}: credits {event.credited} + refund {event.refund} "
                f"!= authorized {record.value}"
            )
        if event.credited != record.charge:
            split_problems.append(
                f"{record.receipt_id}: credited {event.credited}, journal charge {record.charge}"
            )
        if record.state is not PaymentState.SETTLED or record.transaction != event.tx_hash:
            once_problems.append(
                f"{record.receipt_id}: journal {record.state.value} tx {record.transaction}, "
                f"chain tx {event.tx_hash}"
            )
        if (event.payer, event.nonce) != (record.payer.lower(), record.nonce.lower()):
            once_problems.append(
                f"{record.receipt_id}: PaymentSettled settled {event.payer}/{event.nonce}, "
                f"journal authorization {record.payer}/{record.nonce}"
            )
    strangers = [e.receipt_hash for e in events if e.receipt_hash not in known]
    once_problems += [f"PaymentSettled for unknown receipt {h}" for h in strangers]
    settled_in_journals = counts[PaymentState.SETTLED.value] + counts[PaymentState.FAILED.value]
    chargeable = counts[PaymentState.CHARGEABLE.value]
    if chargeable:
        once_problems.append(f"{chargeable} payment(s) still chargeable in the journals")
    if settled_in_journals + chargeable != len(accepted):
        once_problems.append(
            f"journals hold {settled_in_journals + chargeable} accepted payments, "
            f"clients were served {len(accepted)}"
        )
    result.check(
        "credits_plus_refund_equal_authorized",
        split_problems,
        f"{len(accepted)} settled payment(s): credits + refund == authorized value, "
        "credits == charge",
    )
    result.check(
        "every_accepted_payment_settled_once",
        once_problems,
        f"{len(accepted)} accepted payment(s), {len(events)} PaymentSettled event(s), "
        "one each, journals agree",
    )


def _agents(
    result: Audit,
    nodes: Sequence[AuditNode],
    events: list[SettledEvent],
    settlement: SettlementBinding,
    token: TokenBinding,
) -> None:
    credited: Counter[int] = Counter()
    payments: Counter[int] = Counter()
    for event in events:
        for agent_id, amount in event.credits:
            credited[agent_id] += amount
            payments[agent_id] += 1
    match_problems, wallet_problems, ack_problems = [], [], []
    for node in nodes:
        check = node.credit_check
        if check is None:
            ack_problems.append(f"{node.name}: no credit check")
        elif check.shortfall or check.pending:
            ack_problems.append(
                f"agent {node.agent_id}: acknowledged {check.acknowledged} (+{check.pending} "
                f"pending), on chain {check.on_chain}"
            )
        withdrawn = settlement.withdrawn(node.agent_id)
        remaining = settlement.balance_of(node.agent_id)
        wallet_balance = token.balance_of(node.wallet)
        result.agents.append(
            AgentLine(
                agent_id=node.agent_id,
                node=node.name,
                credited=credited[node.agent_id],
                acknowledged=None if check is None else check.acknowledged,
                payments=payments[node.agent_id],
                withdrawn=withdrawn,
                remaining=remaining,
                wallet=node.wallet,
                wallet_balance=wallet_balance,
            )
        )
        if credited[node.agent_id] != withdrawn + remaining:
            match_problems.append(
                f"agent {node.agent_id}: credited {credited[node.agent_id]} != withdrawn "
                f"{withdrawn} + balance {remaining}"
            )
        if wallet_balance != withdrawn or remaining != 0:
            wallet_problems.append(
                f"agent {node.agent_id}: wallet holds {wallet_balance}, withdrawn {withdrawn}, "
                f"left {remaining}"
            )
    strangers = sorted(set(credited) - {n.agent_id for n in nodes})
    match_problems += [f"credits to unknown agent {a}" for a in strangers]
    result.check(
        "agent_credits_match_chain",
        match_problems,
        f"{len(nodes)} agent(s): credits in events == withdrawn + balance",
    )
    result.check(
        "acknowledged_credits_on_chain",
        ack_problems,
        "every node's signed or acknowledged receipts are settled and paid in full on chain",
    )
    result.check(
        "withdrawals_reached_agent_wallets",
        wallet_problems,
        "every agentWallet holds exactly what was withdrawn; nothing left in the contract",
    )


def _clients(
    result: Audit,
    clients: Sequence[AuditClient],
    events: list[SettledEvent],
    token: TokenBinding,
) -> None:
    charged_on_chain: Counter[str] = Counter()
    for event in events:
        charged_on_chain[event.payer] += event.credited
    problems = []
    for client in clients:
        lines = [r for r in result.requests if r.client == client.name]
        paid = [r for r in lines if r.status == 200 and r.error is None]
        authorized = sum(r.authorized or 0 for r in paid)
        charged = sum(r.charged or 0 for r in paid)
        balance = token.balance_of(client.address)
        result.clients.append(
            ClientLine(
                name=client.name,
                address=client.address,
                funded=client.funded,
                requests=len(lines),
                paid=len(paid),
                streamed=sum(1 for r in paid if r.stream),
                prompt_tokens=sum(r.prompt_tokens or 0 for r in paid),
                completion_tokens=sum(r.completion_tokens or 0 for r in paid),
                authorized=authorized,
                charged=charged,
                refunded=authorized - charged,
                balance_after=balance,
            )
        )
        expected = client.funded - charged_on_chain[client.address.lower()]
        if balance != expected:
            problems.append(f"{client.name} holds {balance}, expected {expected}")
    result.check(
        "payer_balances_match",
        problems,
        "every client holds what it was minted minus what it was charged on chain",
    )
