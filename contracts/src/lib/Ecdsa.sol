// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title Ecdsa: secp256k1 signature recovery that reports problems instead of reverting.
/// @notice Callers choose their own revert strings (USDC's, ERC-8004's) or, in a batch,
///         turn a bad signature into a status code; so this library never reverts.
library Ecdsa {
    /// @dev Upper bound for `s` (half the curve order): a high-s signature is the
    ///      malleable twin of a valid one and is refused, as USDC does.
    uint256 internal constant S_MAX = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @dev `isValidSignature(bytes32,bytes)` selector, also its success value.
    bytes4 internal constant ERC1271_MAGIC = 0x1626ba7e;

    enum Error {
        None,
        BadLength,
        BadS,
        BadV,
        NoSigner
    }

    /// @notice Recover the signer of `digest` from (v, r, s).
    /// @return signer the recovered address (zero when `err` is not None)
    /// @return err why recovery failed, or None
    function tryRecover(bytes32 digest, uint8 v, bytes32 r, bytes32 s)
        internal
        pure
        returns (address signer, Error err)
    {
        if (uint256(s) > S_MAX) return (address(0), Error.BadS);
        if (v != 27 && v != 28) return (address(0), Error.BadV);
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) return (address(0), Error.NoSigner);
        return (signer, Error.None);
    }

    /// @notice Recover from a 65-byte r || s || v signature; v of 0/1 counts as 27/28.
    function tryRecover(bytes memory signature, bytes32 digest) internal pure returns (address, Error) {
        if (signature.length != 65) return (address(0), Error.BadLength);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (v < 27) v += 27;
        return tryRecover(digest, v, r, s);
    }

    /// @notice ERC-1271 check for a contract signer: true only for the magic value 0x1626ba7e.
    function isValidErc1271(address signer, bytes32 digest, bytes memory signature) internal view returns (bool) {
        (bool ok, bytes memory ret) =
            signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC, digest, signature));
        return ok && ret.length >= 32 && bytes4(abi.decode(ret, (bytes32))) == ERC1271_MAGIC;
    }
}
