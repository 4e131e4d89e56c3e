"""The payment core: pricing, x402 requirements, local verification.

Pure code: no asyncio, web3, grpc or protobuf, and no clock reads (`now` is
passed in), so every rule here is testable with fixed inputs. The edges reach
the outside world through the Protocols in `core.ports`.
"""
