"""The operator API: a transport-free service and its grpc.aio server."""
