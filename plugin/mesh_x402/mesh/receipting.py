"""Receipts across the mesh: issue, reserve, countersign, collect acks.

The entry node (where the client paid), through the gate's `ReceiptIssuer`
seam (core/ports.py):

- `reserve`: before forwarding an accepted payment, floods a signed
  `NonceReservation`, so a peer that sees the same authorization later
  refuses it (the journal's claim checks the reservations table).
- `charge`: attributes the exchange (core/attribution.py, from the mesh view
  and the verified identities), signs the EIP-712 receipt, and commits the
  payment's `chargeable` state and the receipt in one transaction; then
  floods the receipt to the participants.

Every node, on the gossip handlers:

- a reservation from a verified peer is recorded (first one wins);
- a receipt that credits this node is checked against its own config (the
  attribution policy, the arithmetic, and the charge when the price sheet
  version is the same) and, if right, kept and countersigned: the ack is
  kept locally and flooded back;
- an ack for a receipt this node issued is checked (the acking agent is
  credited in it and signed its digest) and kept.

What a participant cannot check: its own VRAM share, because the host
reports no MeshPeer for the local node (so the VRAM mesh-llm split by is
only known to the others). It checks that it is credited at all.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402.config import NodeConfig
from mesh_x402.core.attribution import Worker, attribute
from mesh_x402.core.pricing import Quote, charge_for_usage, price_for
from mesh_x402.core.receipts import (
    Credit,
    Receipt,
    ReceiptDomain,
    receipt_digest,
    sign_digest,
)
from mesh_x402.core.verify import recover_signer
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.gossip import Gossip, Inbound
from mesh_x402.mesh.identities import Identities
from mesh_x402.mesh.view import MeshView
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["MeshReceipts", "receipt_from_pb", "receipt_to_pb"]

_log = get_logger("receipts")
# Flooded receipts still being sent; kept so they are not garbage-collected.
_MAX_PUBLISHING: Final = 1024


def receipt_to_pb(receipt: Receipt, signature: bytes) -> gpb.Receipt:
    """The wire form of a signed receipt."""
    return gpb.Receipt(
        payer=bytes.fromhex(receipt.payer[2:]),
        nonce=receipt.nonce,
        value=str(receipt.value),
        request_id=receipt.request_id,
        model=receipt.model,
        prompt_tokens=receipt.prompt_tokens,
        completion_tokens=receipt.completion_tokens,
        price_version=receipt.price_version,
        timestamp=receipt.timestamp,
        charge=str(receipt.charge),
        refund=str(receipt.refund),
        entry_agent_id=receipt.entry_agent_id,
        credits=[
            gpb.Receipt.Credit(agent_id=c.agent_id, amount=str(c.amount)) for c in receipt.credits
        ],
        policy=receipt.policy,
        signature=signature,
    )


def _amount(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"amount {text!r} is not a decimal integer")
    return int(text)


def receipt_from_pb(message: gpb.Receipt) -> Receipt:
    """Parse a wire receipt.

    Raises:
        ValueError: a malformed field or a receipt that breaks its invariants.
    """
    if len(message.payer) != 20:
        raise ValueError("receipt payer is not 20 bytes")
    return Receipt(
        payer="0x" + message.payer.hex(),
        nonce=message.nonce,
        value=_amount(message.value),
        request_id=message.request_id,
        model=message.model,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        price_version=message.price_version,
        timestamp=message.timestamp,
        charge=_amount(message.charge),
        refund=_amount(message.refund),
        entry_agent_id=message.entry_agent_id,
        credits=tuple(Credit(c.agent_id, _amount(c.amount)) for c in message.credits),
        policy=message.policy,
    )


class MeshReceipts:
    """The receipt workflow of one node (the gate's `ReceiptIssuer`, and gossip handlers).

    Args:
        config: the node config (pricing, receipts policy and routing share).
        gossip: the signed channel.
        store: receipts, acks and reservations.
        journal: the payment journal (to notice a reservation of a payment we hold).
        view: the mesh view (who serves what, with how much VRAM).
        identities: verified peer identities (agentIds for the credits).
        domain: the receipt's EIP-712 domain.
        secret: the node's signing key.
        clock: unix time in seconds.
    """

    def __init__(
        self,
        *,
        config: NodeConfig,
        gossip: Gossip,
        store: ReceiptStore,
        journal: Journal,
        view: MeshView,
        identities: Identities,
        domain: ReceiptDomain,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._gossip = gossip
        self._store = store
        self._journal = journal
        self._view = view
        self._identities = identities
        self._domain = domain
        self._secret = secret
        self._clock = clock
        self._agent_id = gossip.agent_id
        self._publishing: set[asyncio.Task[None]] = set()
        gossip.on("nonce_reservation", self._on_reservation)
        gossip.on("receipt", self._on_receipt)
        gossip.on("receipt_ack", self._on_ack)
        gossip.on("settlement_notice", self._on_settlement)

    @property
    def counters(self) -> Counter[str]:
        return self._gossip.counters

    # -- the entry node (ReceiptIssuer) ---------------------------------------

    async def reserve(self, *, payer: str, nonce: str, value: int, valid_before: int) -> None:
        """Flood a signed reservation of (payer, nonce).

        Best effort: the payment is already journalled, so a host link that is
        down costs only the early warning to peers (logged), never the request.
        With no peer in the mesh view (standalone, or a mesh of one) there is
        nobody to warn: the message, and its signature, are skipped.
        """
        if not self._view.peers:
            return
        reservation = gpb.NonceReservation(
            payer=bytes.fromhex(payer[2:]),
            nonce=bytes.fromhex(nonce[2:]),
            value=str(value),
            valid_before=valid_before,
        )
        try:
            await self._gossip.publish("nonce_reservation", reservation)
        except (ConnectionError, RuntimeError) as exc:
            self.counters["reservation_not_sent"] += 1
            _log.warning(Event.GOSSIP_DROPPED, reason="reservation_not_sent", error=repr(exc))

    def _workers(self) -> list[Worker]:
        workers = []
        for peer in self._view.peers.values():
            identity = self._identities.by_peer(peer.peer_id)
            workers.append(
                Worker(
                    peer_id=peer.peer_id,
                    agent_id=None if identity is None else identity.agent_id,
                    vram_bytes=peer.vram_bytes,
                    serving_models=peer.serving_models,
                    hosted_models=peer.hosted_models,
                )
            )
        return workers

    async def charge(
        self,
        payment_id: str,
        *,
        payer: str,
        nonce: str,
        value: int,
        request_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        charge: int,
    ) -> None:
        """Sign the receipt, commit it with the `chargeable` state, flood it."""
        settings = self._config.receipts
        attribution = attribute(
            charge=charge,
            model=model,
            entry_agent_id=self._agent_id,
            peers=self._workers(),
            routing_share_bps=settings.routing_share_bps,
        )
        try:
            receipt = Receipt(
                payer=payer,
                nonce=bytes.fromhex(nonce[2:]),
                value=value,
                request_id=request_id,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                price_version=self._config.pricing.version,
                timestamp=int(self._clock()),
                charge=charge,
                refund=value - charge,
                entry_agent_id=self._agent_id,
                credits=attribution.credits,
                policy=settings.policy,
            )
        except ValueError as exc:
            # E.g. a model name longer than a receipt holds. The usage is still
            # recorded; without a receipt the payment is never settled (the
            # payer keeps its money), which the log says loudly.
            _log.error(Event.RECEIPT_UNSIGNABLE, payment_id=payment_id, problem=str(exc))
            await asyncio.shield(
                asyncio.to_thread(
                    self._journal.mark_chargeable,
                    payment_id,
                    charge=charge,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
            )
            return
        digest = receipt_digest(receipt, self._domain)
        signature = sign_digest(self._secret, digest)
        # On the event loop, unsynced: the answer goes out after this commit,
        # and the receipt leaves the node only after the sync (`_publish`).
        self._store.charge_with_receipt(
            payment_id, receipt=receipt, receipt_hash=digest, signature=signature, durable=False
        )
        _log.info(
            Event.RECEIPT_SIGNED,
            receipt_hash="0x" + digest.hex(),
            payment_id=payment_id,
            mode=attribution.mode,
            workers=list(attribution.workers),
            unverified=list(attribution.unverified),
            credits=[[c.agent_id, str(c.amount)] for c in receipt.credits],
        )
        if self._view.peers and len(self._publishing) < _MAX_PUBLISHING:
            # Off the response path.
            task = asyncio.ensure_future(self._publish(receipt_to_pb(receipt, signature)))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        else:  # nobody to tell, or too many floods under way: only the sync
            asyncio.get_running_loop().run_in_executor(None, self._sync)

    def _sync(self) -> bool:
        try:
            self._journal.sync()
        except OSError as exc:
            _log.error(Event.JOURNAL_SYNC_FAILED, error=str(exc))
            return False
        return True

    async def _publish(self, message: gpb.Receipt) -> None:
        """Sync the journal, then flood the receipt: no peer holds a receipt that a
        power loss here could still undo."""
        if not await asyncio.to_thread(self._sync):
            return
        try:
            await self._gossip.publish("receipt", message)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            _log.warning(Event.GOSSIP_DROPPED, reason="receipt_not_sent", error=repr(exc))

    # -- every node: gossip handlers ------------------------------------------

    def _refuse(self, reason: str, **fields: object) -> None:
        self.counters[reason] += 1
        _log.warning(Event.RECEIPT_DISPUTED, reason=reason, **fields)

    async def _on_reservation(self, inbound: Inbound) -> None:
        reservation = inbound.message.nonce_reservation
        if len(reservation.payer) != 20 or len(reservation.nonce) != 32:
            self._refuse("bad_reservation", sender_agent_id=inbound.sender.agent_id)
            return
        payer = "0x" + reservation.payer.hex()
        nonce = "0x" + reservation.nonce.hex()
        new = await asyncio.to_thread(
            self._store.reserve,
            payer,
            nonce,
            agent_id=inbound.sender.agent_id,
            reserved_at=inbound.message.timestamp_ms / 1000,
        )
        if not new:
            return
        _log.info(Event.NONCE_RESERVED, payer=payer, agent_id=inbound.sender.agent_id)
        if await asyncio.to_thread(self._journal.find, payer, nonce) is not None:
            # Both nodes accepted it before either heard of the other: the
            # chain settles it once; the other node's settle item fails.
            self.counters["reservation_conflict"] += 1
            _log.warning(
                Event.NONCE_RESERVATION_CONFLICT, payer=payer, agent_id=inbound.sender.agent_id
            )

    def _dispute(self, receipt: Receipt) -> str | None:
        """Why this node would not countersign `receipt`, or None."""
        if receipt.policy != self._config.receipts.policy:
            return "receipt_policy"
        if receipt.credit_of(self._agent_id) == 0:
            return "receipt_not_ours"
        pricing = self._config.pricing
        if receipt.price_version == pricing.version:
            price = price_for(pricing, receipt.model)
            if price is None:
                return "receipt_unpriced_model"
            quote = Quote(receipt.model, price, 0, 0, receipt.value, None)
            expected = charge_for_usage(quote, receipt.prompt_tokens, receipt.completion_tokens)
            if receipt.charge != expected:
                return "receipt_charge"
        return None

    async def _on_receipt(self, inbound: Inbound) -> None:
        sender = inbound.sender
        message = inbound.message.receipt
        try:
            receipt = receipt_from_pb(message)
        except ValueError as exc:
            self._refuse("bad_receipt", sender_agent_id=sender.agent_id, problem=str(exc))
            return
        if receipt.entry_agent_id != sender.agent_id:
            self._refuse("receipt_not_from_entry", sender_agent_id=sender.agent_id)
            return
        digest = receipt_digest(receipt, self._domain)
        signer = recover_signer(digest, message.signature)
        if signer is None or signer.lower() != sender.signer.lower():
            self._refuse("bad_receipt_signature", sender_agent_id=sender.agent_id)
            return
        problem = self._dispute(receipt)
        if problem == "receipt_not_ours":
            self.counters[problem] += 1  # flooded past us to its participants: not a dispute
            return
        if problem is not None:
            self._refuse(problem, receipt_hash="0x" + digest.hex())
            return
        countersignature = sign_digest(self._secret, digest)
        try:
            await asyncio.to_thread(
                self._store.add_receipt,
                receipt,
                digest,
                message.signature,
                own_ack=(self._agent_id, self._gossip.address, countersignature),
            )
        except ValueError as exc:  # a figure beyond what the store holds
            self._refuse("bad_receipt", receipt_hash="0x" + digest.hex(), problem=str(exc))
            return
        _log.info(
            Event.RECEIPT_RECEIVED,
            receipt_hash="0x" + digest.hex(),
            entry_agent_id=sender.agent_id,
            credit=str(receipt.credit_of(self._agent_id)),
        )
        await self._gossip.publish(
            "receipt_ack",
            gpb.ReceiptAck(
                receipt_hash=digest, agent_id=self._agent_id, signature=countersignature
            ),
        )

    async def _on_ack(self, inbound: Inbound) -> None:
        ack = inbound.message.receipt_ack
        sender = inbound.sender
        if ack.agent_id != sender.agent_id or len(ack.receipt_hash) != 32:
            self._refuse("ack_not_from_sender", sender_agent_id=sender.agent_id)
            return
        stored = await asyncio.to_thread(self._store.get, ack.receipt_hash)
        if stored is None or stored.payment_id is None:
            self.counters["ack_not_ours"] += 1  # an ack for another entry node's receipt
            return
        if stored.receipt.credit_of(ack.agent_id) == 0:
            self._refuse("ack_not_credited", sender_agent_id=sender.agent_id)
            return
        signer = recover_signer(ack.receipt_hash, ack.signature)
        if signer is None or signer.lower() != sender.signer.lower():
            self._refuse("bad_ack_signature", sender_agent_id=sender.agent_id)
            return
        if await asyncio.to_thread(
            self._store.add_ack, ack.receipt_hash, ack.agent_id, signer, ack.signature
        ):
            _log.info(
                Event.RECEIPT_ACKED,
                receipt_hash="0x" + ack.receipt_hash.hex(),
                agent_id=ack.agent_id,
            )

    async def _on_settlement(self, inbound: Inbound) -> None:
        notice = inbound.message.settlement_notice
        _log.info(
            Event.SETTLEMENT_NOTICED,
            agent_id=inbound.sender.agent_id,
            tx_hash="0x" + notice.tx_hash.hex(),
            receipts=len(notice.receipt_hashes),
        )

    async def notify_settled(self, tx_hash: bytes, receipt_hashes: list[bytes]) -> None:
        """Flood a settlement notice (for the reconciler, after a batch lands)."""
        await self._gossip.publish(
            "settlement_notice",
            gpb.SettlementNotice(tx_hash=tx_hash, receipt_hashes=receipt_hashes),
        )

    async def aclose(self) -> None:
        """Wait for receipts still being flooded."""
        await asyncio.gather(*self._publishing, return_exceptions=True)
