from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MeshVisibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESH_VISIBILITY_UNSPECIFIED: _ClassVar[MeshVisibility]
    MESH_VISIBILITY_PRIVATE: _ClassVar[MeshVisibility]
    MESH_VISIBILITY_PUBLIC: _ClassVar[MeshVisibility]

class HttpMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HTTP_METHOD_UNSPECIFIED: _ClassVar[HttpMethod]
    HTTP_METHOD_GET: _ClassVar[HttpMethod]
    HTTP_METHOD_POST: _ClassVar[HttpMethod]
    HTTP_METHOD_PUT: _ClassVar[HttpMethod]
    HTTP_METHOD_PATCH: _ClassVar[HttpMethod]
    HTTP_METHOD_DELETE: _ClassVar[HttpMethod]

class HttpBodyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HTTP_BODY_MODE_UNSPECIFIED: _ClassVar[HttpBodyMode]
    HTTP_BODY_MODE_BUFFERED: _ClassVar[HttpBodyMode]
    HTTP_BODY_MODE_STREAMED: _ClassVar[HttpBodyMode]

class EndpointKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_KIND_UNSPECIFIED: _ClassVar[EndpointKind]
    ENDPOINT_KIND_INFERENCE: _ClassVar[EndpointKind]
    ENDPOINT_KIND_MCP: _ClassVar[EndpointKind]

class EndpointTransportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_TRANSPORT_KIND_UNSPECIFIED: _ClassVar[EndpointTransportKind]
    ENDPOINT_TRANSPORT_KIND_HTTP: _ClassVar[EndpointTransportKind]
    ENDPOINT_TRANSPORT_KIND_UNIX_SOCKET: _ClassVar[EndpointTransportKind]
    ENDPOINT_TRANSPORT_KIND_STDIO: _ClassVar[EndpointTransportKind]
    ENDPOINT_TRANSPORT_KIND_NAMED_PIPE: _ClassVar[EndpointTransportKind]
    ENDPOINT_TRANSPORT_KIND_TCP: _ClassVar[EndpointTransportKind]

class ServiceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_KIND_UNSPECIFIED: _ClassVar[ServiceKind]
    SERVICE_KIND_OPERATION: _ClassVar[ServiceKind]
    SERVICE_KIND_PROMPT: _ClassVar[ServiceKind]
    SERVICE_KIND_RESOURCE: _ClassVar[ServiceKind]
    SERVICE_KIND_COMPLETION: _ClassVar[ServiceKind]

class StreamPurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_PURPOSE_UNSPECIFIED: _ClassVar[StreamPurpose]
    STREAM_PURPOSE_GENERIC: _ClassVar[StreamPurpose]
    STREAM_PURPOSE_HTTP_REQUEST_BODY: _ClassVar[StreamPurpose]
    STREAM_PURPOSE_HTTP_RESPONSE_BODY: _ClassVar[StreamPurpose]
    STREAM_PURPOSE_BULK_TRANSFER: _ClassVar[StreamPurpose]
    STREAM_PURPOSE_MCP: _ClassVar[StreamPurpose]

class StreamMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_MODE_UNSPECIFIED: _ClassVar[StreamMode]
    STREAM_MODE_RAW_BYTES: _ClassVar[StreamMode]
    STREAM_MODE_HTTP1: _ClassVar[StreamMode]
    STREAM_MODE_EVENT_STREAM: _ClassVar[StreamMode]
    STREAM_MODE_CHUNKED_BYTES: _ClassVar[StreamMode]

class StreamTransportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_TRANSPORT_KIND_UNSPECIFIED: _ClassVar[StreamTransportKind]
    STREAM_TRANSPORT_KIND_UNIX_SOCKET: _ClassVar[StreamTransportKind]
    STREAM_TRANSPORT_KIND_NAMED_PIPE: _ClassVar[StreamTransportKind]
    STREAM_TRANSPORT_KIND_TCP: _ClassVar[StreamTransportKind]
MESH_VISIBILITY_UNSPECIFIED: MeshVisibility
MESH_VISIBILITY_PRIVATE: MeshVisibility
MESH_VISIBILITY_PUBLIC: MeshVisibility
HTTP_METHOD_UNSPECIFIED: HttpMethod
HTTP_METHOD_GET: HttpMethod
HTTP_METHOD_POST: HttpMethod
HTTP_METHOD_PUT: HttpMethod
HTTP_METHOD_PATCH: HttpMethod
HTTP_METHOD_DELETE: HttpMethod
HTTP_BODY_MODE_UNSPECIFIED: HttpBodyMode
HTTP_BODY_MODE_BUFFERED: HttpBodyMode
HTTP_BODY_MODE_STREAMED: HttpBodyMode
ENDPOINT_KIND_UNSPECIFIED: EndpointKind
ENDPOINT_KIND_INFERENCE: EndpointKind
ENDPOINT_KIND_MCP: EndpointKind
ENDPOINT_TRANSPORT_KIND_UNSPECIFIED: EndpointTransportKind
ENDPOINT_TRANSPORT_KIND_HTTP: EndpointTransportKind
ENDPOINT_TRANSPORT_KIND_UNIX_SOCKET: EndpointTransportKind
ENDPOINT_TRANSPORT_KIND_STDIO: EndpointTransportKind
ENDPOINT_TRANSPORT_KIND_NAMED_PIPE: EndpointTransportKind
ENDPOINT_TRANSPORT_KIND_TCP: EndpointTransportKind
SERVICE_KIND_UNSPECIFIED: ServiceKind
SERVICE_KIND_OPERATION: ServiceKind
SERVICE_KIND_PROMPT: ServiceKind
SERVICE_KIND_RESOURCE: ServiceKind
SERVICE_KIND_COMPLETION: ServiceKind
STREAM_PURPOSE_UNSPECIFIED: StreamPurpose
STREAM_PURPOSE_GENERIC: StreamPurpose
STREAM_PURPOSE_HTTP_REQUEST_BODY: StreamPurpose
STREAM_PURPOSE_HTTP_RESPONSE_BODY: StreamPurpose
STREAM_PURPOSE_BULK_TRANSFER: StreamPurpose
STREAM_PURPOSE_MCP: StreamPurpose
STREAM_MODE_UNSPECIFIED: StreamMode
STREAM_MODE_RAW_BYTES: StreamMode
STREAM_MODE_HTTP1: StreamMode
STREAM_MODE_EVENT_STREAM: StreamMode
STREAM_MODE_CHUNKED_BYTES: StreamMode
STREAM_TRANSPORT_KIND_UNSPECIFIED: StreamTransportKind
STREAM_TRANSPORT_KIND_UNIX_SOCKET: StreamTransportKind
STREAM_TRANSPORT_KIND_NAMED_PIPE: StreamTransportKind
STREAM_TRANSPORT_KIND_TCP: StreamTransportKind

class Envelope(_message.Message):
    __slots__ = ("protocol_version", "plugin_id", "request_id", "initialize_request", "initialize_response", "health_request", "health_response", "shutdown_request", "shutdown_response", "mesh_event", "rpc_request", "rpc_response", "rpc_notification", "error_response", "channel_message", "bulk_transfer_message", "open_stream_request", "open_stream_response", "cancel_stream_notification", "close_stream_notification", "stream_error", "invoke_service_request", "invoke_service_response", "open_mesh_stream_request", "open_mesh_stream_response")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INITIALIZE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    INITIALIZE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HEALTH_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    MESH_EVENT_FIELD_NUMBER: _ClassVar[int]
    RPC_REQUEST_FIELD_NUMBER: _ClassVar[int]
    RPC_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RPC_NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BULK_TRANSFER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAM_REQUEST_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAM_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_STREAM_NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STREAM_NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    STREAM_ERROR_FIELD_NUMBER: _ClassVar[int]
    INVOKE_SERVICE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    INVOKE_SERVICE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    OPEN_MESH_STREAM_REQUEST_FIELD_NUMBER: _ClassVar[int]
    OPEN_MESH_STREAM_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    plugin_id: str
    request_id: int
    initialize_request: InitializeRequest
    initialize_response: InitializeResponse
    health_request: HealthRequest
    health_response: HealthResponse
    shutdown_request: ShutdownRequest
    shutdown_response: ShutdownResponse
    mesh_event: MeshEvent
    rpc_request: RpcRequest
    rpc_response: RpcResponse
    rpc_notification: RpcNotification
    error_response: ErrorResponse
    channel_message: ChannelMessage
    bulk_transfer_message: BulkTransferMessage
    open_stream_request: OpenStreamRequest
    open_stream_response: OpenStreamResponse
    cancel_stream_notification: CancelStreamNotification
    close_stream_notification: CloseStreamNotification
    stream_error: StreamError
    invoke_service_request: InvokeServiceRequest
    invoke_service_response: InvokeServiceResponse
    open_mesh_stream_request: OpenMeshStreamRequest
    open_mesh_stream_response: OpenMeshStreamResponse
    def __init__(self, protocol_version: _Optional[int] = ..., plugin_id: _Optional[str] = ..., request_id: _Optional[int] = ..., initialize_request: _Optional[_Union[InitializeRequest, _Mapping]] = ..., initialize_response: _Optional[_Union[InitializeResponse, _Mapping]] = ..., health_request: _Optional[_Union[HealthRequest, _Mapping]] = ..., health_response: _Optional[_Union[HealthResponse, _Mapping]] = ..., shutdown_request: _Optional[_Union[ShutdownRequest, _Mapping]] = ..., shutdown_response: _Optional[_Union[ShutdownResponse, _Mapping]] = ..., mesh_event: _Optional[_Union[MeshEvent, _Mapping]] = ..., rpc_request: _Optional[_Union[RpcRequest, _Mapping]] = ..., rpc_response: _Optional[_Union[RpcResponse, _Mapping]] = ..., rpc_notification: _Optional[_Union[RpcNotification, _Mapping]] = ..., error_response: _Optional[_Union[ErrorResponse, _Mapping]] = ..., channel_message: _Optional[_Union[ChannelMessage, _Mapping]] = ..., bulk_transfer_message: _Optional[_Union[BulkTransferMessage, _Mapping]] = ..., open_stream_request: _Optional[_Union[OpenStreamRequest, _Mapping]] = ..., open_stream_response: _Optional[_Union[OpenStreamResponse, _Mapping]] = ..., cancel_stream_notification: _Optional[_Union[CancelStreamNotification, _Mapping]] = ..., close_stream_notification: _Optional[_Union[CloseStreamNotification, _Mapping]] = ..., stream_error: _Optional[_Union[StreamError, _Mapping]] = ..., invoke_service_request: _Optional[_Union[InvokeServiceRequest, _Mapping]] = ..., invoke_service_response: _Optional[_Union[InvokeServiceResponse, _Mapping]] = ..., open_mesh_stream_request: _Optional[_Union[OpenMeshStreamRequest, _Mapping]] = ..., open_mesh_stream_response: _Optional[_Union[OpenMeshStreamResponse, _Mapping]] = ...) -> None: ...

class InitializeRequest(_message.Message):
    __slots__ = ("host_protocol_version", "host_version", "host_info_json", "mesh_visibility")
    HOST_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    MESH_VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    host_protocol_version: int
    host_version: str
    host_info_json: str
    mesh_visibility: MeshVisibility
    def __init__(self, host_protocol_version: _Optional[int] = ..., host_version: _Optional[str] = ..., host_info_json: _Optional[str] = ..., mesh_visibility: _Optional[_Union[MeshVisibility, str]] = ...) -> None: ...

class InitializeResponse(_message.Message):
    __slots__ = ("plugin_id", "plugin_protocol_version", "plugin_version", "server_info_json", "capabilities", "manifest")
    PLUGIN_ID_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    plugin_id: str
    plugin_protocol_version: int
    plugin_version: str
    server_info_json: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    manifest: PluginManifest
    def __init__(self, plugin_id: _Optional[str] = ..., plugin_protocol_version: _Optional[int] = ..., plugin_version: _Optional[str] = ..., server_info_json: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., manifest: _Optional[_Union[PluginManifest, _Mapping]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "detail")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[HealthResponse.Status]
        STATUS_OK: _ClassVar[HealthResponse.Status]
        STATUS_DEGRADED: _ClassVar[HealthResponse.Status]
        STATUS_UNHEALTHY: _ClassVar[HealthResponse.Status]
    STATUS_UNSPECIFIED: HealthResponse.Status
    STATUS_OK: HealthResponse.Status
    STATUS_DEGRADED: HealthResponse.Status
    STATUS_UNHEALTHY: HealthResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    status: HealthResponse.Status
    detail: str
    def __init__(self, status: _Optional[_Union[HealthResponse.Status, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MeshPeer(_message.Message):
    __slots__ = ("peer_id", "version", "capabilities", "role", "vram_bytes", "models", "serving_models", "available_models", "requested_models", "rtt_ms", "model_source", "hosted_models", "hosted_models_known")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VRAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SERVING_MODELS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MODELS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODELS_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    HOSTED_MODELS_FIELD_NUMBER: _ClassVar[int]
    HOSTED_MODELS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    role: str
    vram_bytes: int
    models: _containers.RepeatedScalarFieldContainer[str]
    serving_models: _containers.RepeatedScalarFieldContainer[str]
    available_models: _containers.RepeatedScalarFieldContainer[str]
    requested_models: _containers.RepeatedScalarFieldContainer[str]
    rtt_ms: int
    model_source: str
    hosted_models: _containers.RepeatedScalarFieldContainer[str]
    hosted_models_known: bool
    def __init__(self, peer_id: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., role: _Optional[str] = ..., vram_bytes: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., serving_models: _Optional[_Iterable[str]] = ..., available_models: _Optional[_Iterable[str]] = ..., requested_models: _Optional[_Iterable[str]] = ..., rtt_ms: _Optional[int] = ..., model_source: _Optional[str] = ..., hosted_models: _Optional[_Iterable[str]] = ..., hosted_models_known: _Optional[bool] = ...) -> None: ...

class MeshEvent(_message.Message):
    __slots__ = ("kind", "peer", "local_peer_id", "mesh_id", "detail_json")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[MeshEvent.Kind]
        KIND_PEER_UP: _ClassVar[MeshEvent.Kind]
        KIND_PEER_DOWN: _ClassVar[MeshEvent.Kind]
        KIND_PEER_UPDATED: _ClassVar[MeshEvent.Kind]
        KIND_LOCAL_ACCEPTING: _ClassVar[MeshEvent.Kind]
        KIND_LOCAL_STANDBY: _ClassVar[MeshEvent.Kind]
        KIND_MESH_ID_UPDATED: _ClassVar[MeshEvent.Kind]
    KIND_UNSPECIFIED: MeshEvent.Kind
    KIND_PEER_UP: MeshEvent.Kind
    KIND_PEER_DOWN: MeshEvent.Kind
    KIND_PEER_UPDATED: MeshEvent.Kind
    KIND_LOCAL_ACCEPTING: MeshEvent.Kind
    KIND_LOCAL_STANDBY: MeshEvent.Kind
    KIND_MESH_ID_UPDATED: MeshEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    MESH_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: MeshEvent.Kind
    peer: MeshPeer
    local_peer_id: str
    mesh_id: str
    detail_json: str
    def __init__(self, kind: _Optional[_Union[MeshEvent.Kind, str]] = ..., peer: _Optional[_Union[MeshPeer, _Mapping]] = ..., local_peer_id: _Optional[str] = ..., mesh_id: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class RpcRequest(_message.Message):
    __slots__ = ("method", "params_json")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    method: str
    params_json: str
    def __init__(self, method: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class RpcResponse(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...

class RpcNotification(_message.Message):
    __slots__ = ("method", "params_json")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    method: str
    params_json: str
    def __init__(self, method: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class ErrorResponse(_message.Message):
    __slots__ = ("code", "message", "data_json")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    data_json: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class ChannelMessage(_message.Message):
    __slots__ = ("channel", "source_peer_id", "target_peer_id", "content_type", "body", "message_kind", "correlation_id", "metadata_json")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    channel: str
    source_peer_id: str
    target_peer_id: str
    content_type: str
    body: bytes
    message_kind: str
    correlation_id: str
    metadata_json: str
    def __init__(self, channel: _Optional[str] = ..., source_peer_id: _Optional[str] = ..., target_peer_id: _Optional[str] = ..., content_type: _Optional[str] = ..., body: _Optional[bytes] = ..., message_kind: _Optional[str] = ..., correlation_id: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class BulkTransferMessage(_message.Message):
    __slots__ = ("kind", "transfer_id", "channel", "source_peer_id", "target_peer_id", "content_type", "correlation_id", "metadata_json", "total_bytes", "offset", "body", "final_chunk")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BULK_KIND_UNSPECIFIED: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_OFFER: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_ACCEPT: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_REJECT: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_CHUNK: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_COMPLETE: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_CANCEL: _ClassVar[BulkTransferMessage.Kind]
        BULK_KIND_ERROR: _ClassVar[BulkTransferMessage.Kind]
    BULK_KIND_UNSPECIFIED: BulkTransferMessage.Kind
    BULK_KIND_OFFER: BulkTransferMessage.Kind
    BULK_KIND_ACCEPT: BulkTransferMessage.Kind
    BULK_KIND_REJECT: BulkTransferMessage.Kind
    BULK_KIND_CHUNK: BulkTransferMessage.Kind
    BULK_KIND_COMPLETE: BulkTransferMessage.Kind
    BULK_KIND_CANCEL: BulkTransferMessage.Kind
    BULK_KIND_ERROR: BulkTransferMessage.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    FINAL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    kind: BulkTransferMessage.Kind
    transfer_id: str
    channel: str
    source_peer_id: str
    target_peer_id: str
    content_type: str
    correlation_id: str
    metadata_json: str
    total_bytes: int
    offset: int
    body: bytes
    final_chunk: bool
    def __init__(self, kind: _Optional[_Union[BulkTransferMessage.Kind, str]] = ..., transfer_id: _Optional[str] = ..., channel: _Optional[str] = ..., source_peer_id: _Optional[str] = ..., target_peer_id: _Optional[str] = ..., content_type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., total_bytes: _Optional[int] = ..., offset: _Optional[int] = ..., body: _Optional[bytes] = ..., final_chunk: _Optional[bool] = ...) -> None: ...

class PluginManifest(_message.Message):
    __slots__ = ("operations", "resources", "resource_templates", "prompts", "completions", "http_bindings", "endpoints", "capabilities", "mesh_channels", "mesh_event_subscriptions")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    HTTP_BINDINGS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MESH_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MESH_EVENT_SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[OperationManifest]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceManifest]
    resource_templates: _containers.RepeatedCompositeFieldContainer[ResourceTemplateManifest]
    prompts: _containers.RepeatedCompositeFieldContainer[PromptManifest]
    completions: _containers.RepeatedCompositeFieldContainer[CompletionManifest]
    http_bindings: _containers.RepeatedCompositeFieldContainer[HttpBindingManifest]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointManifest]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    mesh_channels: _containers.RepeatedCompositeFieldContainer[MeshChannelManifest]
    mesh_event_subscriptions: _containers.RepeatedCompositeFieldContainer[MeshEventSubscription]
    def __init__(self, operations: _Optional[_Iterable[_Union[OperationManifest, _Mapping]]] = ..., resources: _Optional[_Iterable[_Union[ResourceManifest, _Mapping]]] = ..., resource_templates: _Optional[_Iterable[_Union[ResourceTemplateManifest, _Mapping]]] = ..., prompts: _Optional[_Iterable[_Union[PromptManifest, _Mapping]]] = ..., completions: _Optional[_Iterable[_Union[CompletionManifest, _Mapping]]] = ..., http_bindings: _Optional[_Iterable[_Union[HttpBindingManifest, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointManifest, _Mapping]]] = ..., capabilities: _Optional[_Iterable[str]] = ..., mesh_channels: _Optional[_Iterable[_Union[MeshChannelManifest, _Mapping]]] = ..., mesh_event_subscriptions: _Optional[_Iterable[_Union[MeshEventSubscription, _Mapping]]] = ...) -> None: ...

class MeshChannelManifest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MeshEventSubscription(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: MeshEvent.Kind
    def __init__(self, kind: _Optional[_Union[MeshEvent.Kind, str]] = ...) -> None: ...

class OperationManifest(_message.Message):
    __slots__ = ("name", "description", "input_schema_json", "output_schema_json", "title")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    input_schema_json: str
    output_schema_json: str
    title: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., output_schema_json: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class ResourceManifest(_message.Message):
    __slots__ = ("uri", "name", "description", "mime_type")
    URI_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    name: str
    description: str
    mime_type: str
    def __init__(self, uri: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., mime_type: _Optional[str] = ...) -> None: ...

class ResourceTemplateManifest(_message.Message):
    __slots__ = ("uri_template", "name", "description", "mime_type")
    URI_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    uri_template: str
    name: str
    description: str
    mime_type: str
    def __init__(self, uri_template: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., mime_type: _Optional[str] = ...) -> None: ...

class PromptManifest(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CompletionManifest(_message.Message):
    __slots__ = ("argument_ref", "description")
    ARGUMENT_REF_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    argument_ref: str
    description: str
    def __init__(self, argument_ref: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class HttpBindingManifest(_message.Message):
    __slots__ = ("binding_id", "method", "path", "operation_name", "request_body_mode", "response_body_mode", "request_schema_json", "response_schema_json")
    BINDING_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OPERATION_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_MODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_MODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    binding_id: str
    method: HttpMethod
    path: str
    operation_name: str
    request_body_mode: HttpBodyMode
    response_body_mode: HttpBodyMode
    request_schema_json: str
    response_schema_json: str
    def __init__(self, binding_id: _Optional[str] = ..., method: _Optional[_Union[HttpMethod, str]] = ..., path: _Optional[str] = ..., operation_name: _Optional[str] = ..., request_body_mode: _Optional[_Union[HttpBodyMode, str]] = ..., response_body_mode: _Optional[_Union[HttpBodyMode, str]] = ..., request_schema_json: _Optional[str] = ..., response_schema_json: _Optional[str] = ...) -> None: ...

class EndpointManifest(_message.Message):
    __slots__ = ("endpoint_id", "kind", "transport_kind", "protocol", "address", "args", "namespace", "supports_streaming", "managed_by_plugin")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_KIND_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    MANAGED_BY_PLUGIN_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    kind: EndpointKind
    transport_kind: EndpointTransportKind
    protocol: str
    address: str
    args: _containers.RepeatedScalarFieldContainer[str]
    namespace: str
    supports_streaming: bool
    managed_by_plugin: bool
    def __init__(self, endpoint_id: _Optional[str] = ..., kind: _Optional[_Union[EndpointKind, str]] = ..., transport_kind: _Optional[_Union[EndpointTransportKind, str]] = ..., protocol: _Optional[str] = ..., address: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., namespace: _Optional[str] = ..., supports_streaming: _Optional[bool] = ..., managed_by_plugin: _Optional[bool] = ...) -> None: ...

class InvokeServiceRequest(_message.Message):
    __slots__ = ("kind", "service_name", "input_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: ServiceKind
    service_name: str
    input_json: str
    def __init__(self, kind: _Optional[_Union[ServiceKind, str]] = ..., service_name: _Optional[str] = ..., input_json: _Optional[str] = ...) -> None: ...

class InvokeServiceResponse(_message.Message):
    __slots__ = ("output_json", "is_error")
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    output_json: str
    is_error: bool
    def __init__(self, output_json: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class OpenStreamRequest(_message.Message):
    __slots__ = ("stream_id", "purpose", "mode", "bidirectional", "content_type", "correlation_id", "metadata_json", "expected_bytes", "idle_timeout_ms")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    purpose: StreamPurpose
    mode: StreamMode
    bidirectional: bool
    content_type: str
    correlation_id: str
    metadata_json: str
    expected_bytes: int
    idle_timeout_ms: int
    def __init__(self, stream_id: _Optional[str] = ..., purpose: _Optional[_Union[StreamPurpose, str]] = ..., mode: _Optional[_Union[StreamMode, str]] = ..., bidirectional: _Optional[bool] = ..., content_type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., expected_bytes: _Optional[int] = ..., idle_timeout_ms: _Optional[int] = ...) -> None: ...

class OpenStreamResponse(_message.Message):
    __slots__ = ("stream_id", "accepted", "transport_kind", "endpoint", "token", "expires_at_unix_ms", "message")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_KIND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    accepted: bool
    transport_kind: StreamTransportKind
    endpoint: str
    token: str
    expires_at_unix_ms: int
    message: str
    def __init__(self, stream_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., transport_kind: _Optional[_Union[StreamTransportKind, str]] = ..., endpoint: _Optional[str] = ..., token: _Optional[str] = ..., expires_at_unix_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CancelStreamNotification(_message.Message):
    __slots__ = ("stream_id", "reason")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    reason: str
    def __init__(self, stream_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseStreamNotification(_message.Message):
    __slots__ = ("stream_id", "reason")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    reason: str
    def __init__(self, stream_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("stream_id", "code", "message")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    code: int
    message: str
    def __init__(self, stream_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class OpenMeshStreamRequest(_message.Message):
    __slots__ = ("stream_id", "target_peer_id", "plugin_id", "channel", "purpose", "mode", "bidirectional", "content_type", "correlation_id", "metadata_json", "expected_bytes", "idle_timeout_ms")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    target_peer_id: str
    plugin_id: str
    channel: str
    purpose: StreamPurpose
    mode: StreamMode
    bidirectional: bool
    content_type: str
    correlation_id: str
    metadata_json: str
    expected_bytes: int
    idle_timeout_ms: int
    def __init__(self, stream_id: _Optional[str] = ..., target_peer_id: _Optional[str] = ..., plugin_id: _Optional[str] = ..., channel: _Optional[str] = ..., purpose: _Optional[_Union[StreamPurpose, str]] = ..., mode: _Optional[_Union[StreamMode, str]] = ..., bidirectional: _Optional[bool] = ..., content_type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., expected_bytes: _Optional[int] = ..., idle_timeout_ms: _Optional[int] = ...) -> None: ...

class OpenMeshStreamResponse(_message.Message):
    __slots__ = ("stream_id", "accepted", "transport_kind", "endpoint", "token", "expires_at_unix_ms", "message")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_KIND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    accepted: bool
    transport_kind: StreamTransportKind
    endpoint: str
    token: str
    expires_at_unix_ms: int
    message: str
    def __init__(self, stream_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., transport_kind: _Optional[_Union[StreamTransportKind, str]] = ..., endpoint: _Optional[str] = ..., token: _Optional[str] = ..., expires_at_unix_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
