from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetIdentityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Identity(_message.Message):
    __slots__ = ("signer", "registered", "agent_id", "chain_id", "identity_registry", "settlement", "token", "peer_id", "mesh_id", "version")
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    MESH_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    signer: str
    registered: bool
    agent_id: int
    chain_id: int
    identity_registry: str
    settlement: str
    token: str
    peer_id: str
    mesh_id: str
    version: str
    def __init__(self, signer: _Optional[str] = ..., registered: _Optional[bool] = ..., agent_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., identity_registry: _Optional[str] = ..., settlement: _Optional[str] = ..., token: _Optional[str] = ..., peer_id: _Optional[str] = ..., mesh_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Balances(_message.Message):
    __slots__ = ("agent_id", "credited", "withdrawn", "acknowledged", "pending", "shortfall", "unsettled_charges")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITED_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_FIELD_NUMBER: _ClassVar[int]
    UNSETTLED_CHARGES_FIELD_NUMBER: _ClassVar[int]
    agent_id: int
    credited: str
    withdrawn: str
    acknowledged: str
    pending: str
    shortfall: str
    unsettled_charges: str
    def __init__(self, agent_id: _Optional[int] = ..., credited: _Optional[str] = ..., withdrawn: _Optional[str] = ..., acknowledged: _Optional[str] = ..., pending: _Optional[str] = ..., shortfall: _Optional[str] = ..., unsettled_charges: _Optional[str] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("agent_id", "amount")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    agent_id: int
    amount: str
    def __init__(self, agent_id: _Optional[int] = ..., amount: _Optional[str] = ...) -> None: ...

class ReceiptRecord(_message.Message):
    __slots__ = ("receipt_hash", "payment_id", "payer", "nonce", "value", "charge", "refund", "entry_agent_id", "credits", "request_id", "model", "prompt_tokens", "completion_tokens", "price_version", "timestamp", "policy", "signature", "payment_state", "transaction", "created_at")
    RECEIPT_HASH_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    ENTRY_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_STATE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    receipt_hash: str
    payment_id: str
    payer: str
    nonce: str
    value: str
    charge: str
    refund: str
    entry_agent_id: int
    credits: _containers.RepeatedCompositeFieldContainer[Credit]
    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    price_version: int
    timestamp: int
    policy: str
    signature: str
    payment_state: str
    transaction: str
    created_at: float
    def __init__(self, receipt_hash: _Optional[str] = ..., payment_id: _Optional[str] = ..., payer: _Optional[str] = ..., nonce: _Optional[str] = ..., value: _Optional[str] = ..., charge: _Optional[str] = ..., refund: _Optional[str] = ..., entry_agent_id: _Optional[int] = ..., credits: _Optional[_Iterable[_Union[Credit, _Mapping]]] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., price_version: _Optional[int] = ..., timestamp: _Optional[int] = ..., policy: _Optional[str] = ..., signature: _Optional[str] = ..., payment_state: _Optional[str] = ..., transaction: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class ListReceiptsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReceiptsResponse(_message.Message):
    __slots__ = ("receipts", "next_page_token")
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedCompositeFieldContainer[ReceiptRecord]
    next_page_token: str
    def __init__(self, receipts: _Optional[_Iterable[_Union[ReceiptRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetReceiptRequest(_message.Message):
    __slots__ = ("receipt_hash",)
    RECEIPT_HASH_FIELD_NUMBER: _ClassVar[int]
    receipt_hash: str
    def __init__(self, receipt_hash: _Optional[str] = ...) -> None: ...

class StreamReceiptsRequest(_message.Message):
    __slots__ = ("after",)
    AFTER_FIELD_NUMBER: _ClassVar[int]
    after: float
    def __init__(self, after: _Optional[float] = ...) -> None: ...

class GetSettlementStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Batch(_message.Message):
    __slots__ = ("id", "tx_hash", "state", "nonce", "items", "block_number", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    tx_hash: str
    state: str
    nonce: int
    items: int
    block_number: int
    reason: str
    def __init__(self, id: _Optional[int] = ..., tx_hash: _Optional[str] = ..., state: _Optional[str] = ..., nonce: _Optional[int] = ..., items: _Optional[int] = ..., block_number: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SettlementStatus(_message.Message):
    __slots__ = ("payments", "batches", "last_batch")
    class PaymentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class BatchesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    LAST_BATCH_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.ScalarMap[str, int]
    batches: _containers.ScalarMap[str, int]
    last_batch: Batch
    def __init__(self, payments: _Optional[_Mapping[str, int]] = ..., batches: _Optional[_Mapping[str, int]] = ..., last_batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("ok", "error", "settled", "failed", "retrying", "batches", "shortfall")
    class FailedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RetryingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RETRYING_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    settled: int
    failed: _containers.ScalarMap[str, int]
    retrying: _containers.ScalarMap[str, int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    shortfall: str
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., settled: _Optional[int] = ..., failed: _Optional[_Mapping[str, int]] = ..., retrying: _Optional[_Mapping[str, int]] = ..., batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ..., shortfall: _Optional[str] = ...) -> None: ...
