"""The plugin's exception tree.

Payment refusals are values (see `core`), not exceptions. Exceptions are for
bad local input (config, key file, CLI flags) and infrastructure faults::

    PluginError
    ├── ConfigError        a node config file is unusable (names file, key, problem)
    ├── KeyFileError       the EVM key file is missing, malformed or too open
    ├── FrameError         a frame from the host is oversized, truncated or undecodable
    └── ChainError         the chain cannot do what was asked
        ├── RpcUnavailable     the JSON-RPC endpoint does not answer
        ├── WrongChain         the endpoint serves another chain id
        └── NoContractCode     no code at an address that should hold a contract
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ConfigError",
    "FrameError",
    "KeyFileError",
    "NoContractCode",
    "PluginError",
    "RpcUnavailable",
    "WrongChain",
]


class PluginError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PluginError):
    """A config file cannot be used; the message names the file, key and problem."""


class KeyFileError(PluginError):
    """The node's EVM key file is missing, malformed, or readable by others."""


class FrameError(PluginError):
    """A frame from the host broke the framing rules; the connection must end."""


class ChainError(PluginError):
    """The chain could not do what was asked."""


class RpcUnavailable(ChainError):
    """The JSON-RPC endpoint did not answer."""


class WrongChain(ChainError):
    """The endpoint serves a chain id other than the configured one."""


class NoContractCode(ChainError):
    """An address that should hold a contract has no code."""
