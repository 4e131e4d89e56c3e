"""The HTTP edge: the ASGI app, the payment gate, and the upstream adapter."""
