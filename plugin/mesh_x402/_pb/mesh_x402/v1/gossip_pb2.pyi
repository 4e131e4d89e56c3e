from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_TYPE_UNSPECIFIED: _ClassVar[MessageType]
    MESSAGE_TYPE_IDENTITY_CLAIM: _ClassVar[MessageType]
    MESSAGE_TYPE_NONCE_RESERVATION: _ClassVar[MessageType]
    MESSAGE_TYPE_RECEIPT: _ClassVar[MessageType]
    MESSAGE_TYPE_RECEIPT_ACK: _ClassVar[MessageType]
    MESSAGE_TYPE_SETTLEMENT_NOTICE: _ClassVar[MessageType]
MESSAGE_TYPE_UNSPECIFIED: MessageType
MESSAGE_TYPE_IDENTITY_CLAIM: MessageType
MESSAGE_TYPE_NONCE_RESERVATION: MessageType
MESSAGE_TYPE_RECEIPT: MessageType
MESSAGE_TYPE_RECEIPT_ACK: MessageType
MESSAGE_TYPE_SETTLEMENT_NOTICE: MessageType

class SignedMessage(_message.Message):
    __slots__ = ("payload", "signature")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class GossipMessage(_message.Message):
    __slots__ = ("type", "sender_agent_id", "sender_peer_id", "chain_id", "timestamp_ms", "message_id", "identity_claim", "nonce_reservation", "receipt", "receipt_ack", "settlement_notice")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_CLAIM_FIELD_NUMBER: _ClassVar[int]
    NONCE_RESERVATION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ACK_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_NOTICE_FIELD_NUMBER: _ClassVar[int]
    type: MessageType
    sender_agent_id: int
    sender_peer_id: str
    chain_id: int
    timestamp_ms: int
    message_id: bytes
    identity_claim: IdentityClaim
    nonce_reservation: NonceReservation
    receipt: Receipt
    receipt_ack: ReceiptAck
    settlement_notice: SettlementNotice
    def __init__(self, type: _Optional[_Union[MessageType, str]] = ..., sender_agent_id: _Optional[int] = ..., sender_peer_id: _Optional[str] = ..., chain_id: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., message_id: _Optional[bytes] = ..., identity_claim: _Optional[_Union[IdentityClaim, _Mapping]] = ..., nonce_reservation: _Optional[_Union[NonceReservation, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., receipt_ack: _Optional[_Union[ReceiptAck, _Mapping]] = ..., settlement_notice: _Optional[_Union[SettlementNotice, _Mapping]] = ...) -> None: ...

class IdentityClaim(_message.Message):
    __slots__ = ("peer_id", "agent_id", "identity_registry", "chain_id", "signer")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    agent_id: int
    identity_registry: bytes
    chain_id: int
    signer: bytes
    def __init__(self, peer_id: _Optional[str] = ..., agent_id: _Optional[int] = ..., identity_registry: _Optional[bytes] = ..., chain_id: _Optional[int] = ..., signer: _Optional[bytes] = ...) -> None: ...

class NonceReservation(_message.Message):
    __slots__ = ("payer", "nonce", "value", "valid_before")
    PAYER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALID_BEFORE_FIELD_NUMBER: _ClassVar[int]
    payer: bytes
    nonce: bytes
    value: str
    valid_before: int
    def __init__(self, payer: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., value: _Optional[str] = ..., valid_before: _Optional[int] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("payer", "nonce", "value", "request_id", "model", "prompt_tokens", "completion_tokens", "price_version", "timestamp", "charge", "refund", "entry_agent_id", "credits", "policy", "signature")
    class Credit(_message.Message):
        __slots__ = ("agent_id", "amount")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        AMOUNT_FIELD_NUMBER: _ClassVar[int]
        agent_id: int
        amount: str
        def __init__(self, agent_id: _Optional[int] = ..., amount: _Optional[str] = ...) -> None: ...
    PAYER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    ENTRY_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payer: bytes
    nonce: bytes
    value: str
    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    price_version: int
    timestamp: int
    charge: str
    refund: str
    entry_agent_id: int
    credits: _containers.RepeatedCompositeFieldContainer[Receipt.Credit]
    policy: str
    signature: bytes
    def __init__(self, payer: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., value: _Optional[str] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., price_version: _Optional[int] = ..., timestamp: _Optional[int] = ..., charge: _Optional[str] = ..., refund: _Optional[str] = ..., entry_agent_id: _Optional[int] = ..., credits: _Optional[_Iterable[_Union[Receipt.Credit, _Mapping]]] = ..., policy: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ReceiptAck(_message.Message):
    __slots__ = ("receipt_hash", "agent_id", "signature")
    RECEIPT_HASH_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    receipt_hash: bytes
    agent_id: int
    signature: bytes
    def __init__(self, receipt_hash: _Optional[bytes] = ..., agent_id: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SettlementNotice(_message.Message):
    __slots__ = ("tx_hash", "receipt_hashes")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_HASHES_FIELD_NUMBER: _ClassVar[int]
    tx_hash: bytes
    receipt_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, tx_hash: _Optional[bytes] = ..., receipt_hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...
