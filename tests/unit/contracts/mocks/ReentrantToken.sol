// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Test double: a hostile "token" whose transfers call back into the settlement,
///         to show the settlement's reentrancy lock holds.
contract ReentrantToken {
    address public target;
    bytes public reentry;
    mapping(address => uint256) public balanceOf;

    function arm(address target_, bytes calldata reentry_) external {
        target = target_;
        reentry = reentry_;
    }

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
    }

    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256,
        uint256,
        bytes32,
        uint8,
        bytes32,
        bytes32
    ) external {
        balanceOf[from] -= value;
        balanceOf[to] += value;
        _reenter();
    }

    function transfer(address to, uint256 value) external returns (bool) {
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        _reenter();
        return true;
    }

    function authorizationState(address, bytes32) external pure returns (bool) {
        return false;
    }

    function DOMAIN_SEPARATOR() external pure returns (bytes32) {
        return bytes32(0);
    }

    // Bubble the callee's revert so the outer call fails exactly when reentry is refused.
    function _reenter() private {
        if (target == address(0)) return;
        (bool ok, bytes memory reason) = target.call(reentry);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(reason, 0x20), mload(reason))
            }
        }
    }
}
