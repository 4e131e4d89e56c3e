// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ecdsa} from "./lib/Ecdsa.sol";

/// @notice The EIP-3009 token surface MeshSettlement uses (USDC FiatTokenV2).
interface IEip3009Token {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
    function DOMAIN_SEPARATOR() external view returns (bytes32);
}

/// @notice The ERC-8004 identity registry surface MeshSettlement uses.
interface IAgentRegistry {
    function ownerOf(uint256 agentId) external view returns (address);
    function getAgentWallet(uint256 agentId) external view returns (address);
    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory);
}

/// @title MeshSettlement: the x402 payTo of a mesh, paying nodes through ERC-8004 identities.
/// @notice A node (the "entry" agent that took the x402 payment) settles a batch of payments:
///         each item executes one EIP-3009 authorization into this contract, credits the
///         agents that served the request and refunds the payer the unused part. Credited
///         balances are withdrawn to each agent's ERC-8004 agentWallet.
///         Items are independent: a bad item gets a status code and is skipped, it never
///         reverts the batch. See contracts/README.md for the rules and their reasons.
contract MeshSettlement {
    struct Credit {
        uint256 agentId;
        uint256 amount;
    }

    /// @notice One x402 payment: an EIP-3009 TransferWithAuthorization to this contract.
    struct Payment {
        address from;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    struct Item {
        Payment payment;
        uint256 entryAgentId;
        bytes32 receiptHash;
        Credit[] credits;
        uint256 refund;
    }

    // Per-item status codes, returned by settle and emitted by ItemRejected.
    uint8 public constant SETTLED = 0;
    uint8 public constant ALREADY_SETTLED = 1;
    uint8 public constant BAD_SPLIT = 2;
    uint8 public constant UNKNOWN_AGENT = 3;
    uint8 public constant NOT_ENTRY_SIGNER = 4;
    uint8 public constant AUTHORIZATION_FAILED = 5;
    uint8 public constant NOT_FUNDED = 6;

    bytes32 private constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH =
        0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267;
    string private constant SIGNER_KEY = "mesh-llm.signer";

    IEip3009Token public immutable token;
    IAgentRegistry public immutable identityRegistry;

    /// @notice Credited and not yet withdrawn, per agentId.
    mapping(uint256 => uint256) public balanceOf;
    /// @notice Sum of balanceOf over all agents: token.balanceOf(this) above it is surplus.
    uint256 public liabilities;
    mapping(address => mapping(bytes32 => bool)) private _settled;
    bool private transient _locked;

    /// @notice One settled payment: who was credited what, and the payer's refund. The
    ///         authorization's nonce is in the token's AuthorizationUsed event of the same
    ///         transaction (or in paymentStatus), so it is not repeated here.
    event PaymentSettled(bytes32 indexed receiptHash, address indexed payer, uint256 refund, Credit[] credits);
    event ItemRejected(uint256 indexed index, bytes32 indexed receiptHash, uint8 status);
    event Withdrawn(uint256 indexed agentId, address indexed wallet, uint256 amount);

    error NoCode(address account);
    error Reentrancy();
    error AgentWalletUnset(uint256 agentId);
    error TokenTransferFailed(address to, uint256 amount);

    /// @dev Working state of one settle call, kept in memory so that storage is written once
    ///      per agent and once in total, not once per item.
    struct Batch {
        uint256[] agentIds; // agents known to exist, in first-seen order
        uint256[] credited; // pending credit per agentIds entry
        uint256 agents;
        uint256[] entryIds; // entry agents already checked against msg.sender
        uint8[] entryStatus;
        uint256 entries;
        address[] payers; // pending refunds; consecutive items of one payer share an entry
        uint256[] refunds;
        uint256 payees;
        uint256 owed; // liabilities + credits and refunds booked in this batch
        bytes32 domainSeparator; // token's, read once when first needed
    }

    modifier nonReentrant() {
        if (_locked) revert Reentrancy();
        _locked = true;
        _;
        _locked = false;
    }

    constructor(address token_, address identityRegistry_) {
        if (token_.code.length == 0) revert NoCode(token_);
        if (identityRegistry_.code.length == 0) revert NoCode(identityRegistry_);
        token = IEip3009Token(token_);
        identityRegistry = IAgentRegistry(identityRegistry_);
    }

    /// @notice True once the authorization (from, nonce) was credited by this contract.
    function paymentStatus(address from, bytes32 nonce) external view returns (bool settled) {
        return _settled[from][nonce];
    }

    /// @notice Settle a batch of x402 payments; one status per item (0 = SETTLED).
    /// @dev The caller must be the registered signer of each item's entry agent.
    function settle(Item[] calldata items) external nonReentrant returns (uint8[] memory statuses) {
        uint256 n = items.length;
        statuses = new uint8[](n);
        Batch memory b = _newBatch(items);
        for (uint256 i; i < n; ++i) {
            Item calldata item = items[i];
            uint8 status = _settleItem(item, b);
            if (status != SETTLED) {
                statuses[i] = status;
                emit ItemRejected(i, item.receiptHash, status);
            }
        }
        _finish(b);
    }

    /// @notice Pay agentId's whole credited balance to its ERC-8004 agentWallet.
    /// @dev Anyone may call: the money can only go to the wallet the agent's owner proved.
    function withdraw(uint256 agentId) external nonReentrant returns (uint256 amount) {
        address wallet = identityRegistry.getAgentWallet(agentId);
        if (wallet == address(0)) revert AgentWalletUnset(agentId);
        amount = balanceOf[agentId];
        if (amount == 0) return 0;
        balanceOf[agentId] = 0;
        liabilities -= amount;
        emit Withdrawn(agentId, wallet, amount);
        _pay(wallet, amount);
    }

    // ---------------------------------------------------------------- one item

    function _settleItem(Item calldata item, Batch memory b) private returns (uint8) {
        Payment calldata p = item.payment;
        address from = p.from;
        bytes32 nonce = p.nonce;
        if (_settled[from][nonce]) return ALREADY_SETTLED;

        uint256 value = p.value;
        uint256 refund = item.refund;
        Credit[] calldata credits = item.credits;
        if (!_splitMatches(credits, value, refund)) return BAD_SPLIT;
        uint8 status = _checkEntry(item.entryAgentId, b);
        if (status != SETTLED) return status;
        for (uint256 j; j < credits.length; ++j) {
            if (_agentIndex(credits[j].agentId, b) == type(uint256).max) return UNKNOWN_AGENT;
        }

        // Effects before the token call: the marker is what makes a second credit impossible.
        _settled[from][nonce] = true;
        if (!_pull(p)) {
            status = _checkPreExecuted(p, b);
            if (status != SETTLED) {
                _settled[from][nonce] = false;
                return status;
            }
        }

        for (uint256 j; j < credits.length; ++j) {
            b.credited[_agentIndex(credits[j].agentId, b)] += credits[j].amount;
        }
        if (refund != 0) _bookRefund(from, refund, b);
        b.owed += value;
        emit PaymentSettled(item.receiptHash, from, refund, credits);
        return SETTLED;
    }

    // sum(credits) + refund == value, computed by subtraction so no input can overflow.
    function _splitMatches(Credit[] calldata credits, uint256 value, uint256 refund) private pure returns (bool) {
        if (refund > value) return false;
        uint256 rest = value - refund;
        for (uint256 j; j < credits.length; ++j) {
            uint256 amount = credits[j].amount;
            if (amount > rest) return false;
            rest -= amount;
        }
        return rest == 0;
    }

    /// @dev Executes transferWithAuthorization(from, this, ...) without reverting; the
    ///      payment's calldata already holds the remaining arguments in the token's order.
    function _pull(Payment calldata p) private returns (bool ok) {
        address t = address(token);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0xe3ee160e))
            mstore(add(m, 0x04), calldataload(p)) // from
            mstore(add(m, 0x24), address()) // to
            calldatacopy(add(m, 0x44), add(p, 0x20), 0xe0) // value .. s
            ok := call(gas(), t, 0, m, 0x124, 0, 0)
        }
    }

    /// @dev The authorization could not be executed. It may still be credited if someone
    ///      else executed it on the token (the nonce is used), it is this payer's signature
    ///      of a transfer to us, and the contract really holds that much unaccounted money:
    ///      a used nonce alone proves nothing, as the payer may have signed another
    ///      authorization (other payee, other value) with the same nonce, or canceled it.
    function _checkPreExecuted(Payment calldata p, Batch memory b) private view returns (uint8) {
        if (!token.authorizationState(p.from, p.nonce)) return AUTHORIZATION_FAILED;
        if (b.domainSeparator == bytes32(0)) b.domainSeparator = token.DOMAIN_SEPARATOR();
        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                b.domainSeparator,
                keccak256(
                    abi.encode(
                        TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
                        p.from,
                        address(this),
                        p.value,
                        p.validAfter,
                        p.validBefore,
                        p.nonce
                    )
                )
            )
        );
        (address signer, Ecdsa.Error err) = Ecdsa.tryRecover(digest, p.v, p.r, p.s);
        if (err != Ecdsa.Error.None || signer != p.from) return AUTHORIZATION_FAILED;
        uint256 held = token.balanceOf(address(this));
        if (held < b.owed || held - b.owed < p.value) return NOT_FUNDED;
        return SETTLED;
    }

    // ---------------------------------------------------------------- per-batch caches

    function _newBatch(Item[] calldata items) private view returns (Batch memory b) {
        uint256 n = items.length;
        uint256 creditCount;
        for (uint256 i; i < n; ++i) {
            creditCount += items[i].credits.length;
        }
        b.agentIds = new uint256[](creditCount);
        b.credited = new uint256[](creditCount);
        b.entryIds = new uint256[](n);
        b.entryStatus = new uint8[](n);
        b.payers = new address[](n);
        b.refunds = new uint256[](n);
        b.owed = liabilities;
    }

    /// @dev SETTLED when msg.sender is entryAgentId's agentWallet or its "mesh-llm.signer"
    ///      address; UNKNOWN_AGENT when no such agent; NOT_ENTRY_SIGNER otherwise.
    function _checkEntry(uint256 entryAgentId, Batch memory b) private view returns (uint8 status) {
        for (uint256 k; k < b.entries; ++k) {
            if (b.entryIds[k] == entryAgentId) return b.entryStatus[k];
        }
        status = NOT_ENTRY_SIGNER;
        try identityRegistry.getAgentWallet(entryAgentId) returns (address wallet) {
            if (wallet == msg.sender) {
                status = SETTLED;
            } else {
                bytes memory signer = identityRegistry.getMetadata(entryAgentId, SIGNER_KEY);
                if (signer.length == 20 && address(bytes20(signer)) == msg.sender) status = SETTLED;
            }
        } catch {
            status = UNKNOWN_AGENT;
        }
        b.entryIds[b.entries] = entryAgentId;
        b.entryStatus[b.entries] = status;
        ++b.entries;
    }

    /// @dev Index of agentId in the batch's agent list (asking the registry the first time),
    ///      or type(uint256).max when the registry does not know it. 0 is a valid agentId.
    function _agentIndex(uint256 agentId, Batch memory b) private view returns (uint256) {
        uint256 count = b.agents;
        uint256[] memory ids = b.agentIds;
        for (uint256 k; k < count; ++k) {
            if (ids[k] == agentId) return k;
        }
        try identityRegistry.ownerOf(agentId) returns (address) {
            ids[count] = agentId;
            b.agents = count + 1;
            return count;
        } catch {
            return type(uint256).max;
        }
    }

    function _bookRefund(address payer, uint256 amount, Batch memory b) private pure {
        uint256 last = b.payees;
        if (last != 0 && b.payers[last - 1] == payer) {
            b.refunds[last - 1] += amount;
        } else {
            b.payers[last] = payer;
            b.refunds[last] = amount;
            b.payees = last + 1;
        }
    }

    /// @dev Write each agent's credit and the liabilities once, then pay the refunds
    ///      (interactions last).
    function _finish(Batch memory b) private {
        uint256 total;
        for (uint256 k; k < b.agents; ++k) {
            uint256 amount = b.credited[k];
            if (amount != 0) {
                balanceOf[b.agentIds[k]] += amount;
                total += amount;
            }
        }
        if (total != 0) liabilities += total;
        for (uint256 k; k < b.payees; ++k) {
            _pay(b.payers[k], b.refunds[k]);
        }
    }

    function _pay(address to, uint256 amount) private {
        if (!token.transfer(to, amount)) revert TokenTransferFailed(to, amount);
    }
}
