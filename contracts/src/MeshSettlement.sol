// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

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
    function transfer(address to, uint256 value) external returns (bool);
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
///         reverts the batch. Exactly-once rests on the token's EIP-3009 nonce: an
///         authorization can be pulled at most once, and nothing but a successful pull is
///         credited. See contracts/README.md for the rules and their reasons.
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
    /// @dev The token's nonce is already used or canceled: settled here before, executed
    ///      by someone else, or canceled by the payer (PaymentSettled logs tell them apart).
    uint8 public constant NONCE_USED = 1;
    uint8 public constant BAD_SPLIT = 2;
    uint8 public constant UNKNOWN_AGENT = 3;
    uint8 public constant NOT_ENTRY_SIGNER = 4;
    uint8 public constant AUTHORIZATION_FAILED = 5;

    string private constant SIGNER_KEY = "mesh-llm.signer";

    IEip3009Token public immutable token;
    IAgentRegistry public immutable identityRegistry;

    /// @notice Credited and not yet withdrawn, per agentId.
    mapping(uint256 => uint256) public balanceOf;
    /// @notice Sum of balanceOf over all agents: token.balanceOf(this) above it is surplus.
    uint256 public liabilities;
    bool private transient _locked;

    /// @notice One settled payment: the authorization (payer, nonce) this contract pulled,
    ///         who was credited what, and the payer's refund. The nonce is the proof that
    ///         this contract settled the authorization (nothing else records it here): a
    ///         log found by receiptHash counts only if its payer and nonce are the
    ///         receipt's, as settle does not bind receiptHash to the authorization.
    event PaymentSettled(
        bytes32 indexed receiptHash, address indexed payer, bytes32 nonce, uint256 refund, Credit[] credits
    );
    event ItemRejected(uint256 indexed index, bytes32 indexed receiptHash, uint8 status);
    event Withdrawn(uint256 indexed agentId, address indexed wallet, uint256 amount);

    error NoCode(address account);
    error Reentrancy();
    error AgentWalletUnset(uint256 agentId);
    error TokenTransferFailed(address to, uint256 amount);
    /// @notice The items' ABI encoding is broken (not a bad item: no encoder produces it).
    error MalformedItems();

    // Byte offsets of an Item's fields in its ABI encoding (calldata). The Payment struct is
    // static, so it sits inline at the start; `credits` is an offset from the item's start.
    // VALID_AFTER .. SIG_S are not read one by one: _pull copies value .. s in one go.
    uint256 private constant FROM = 0x00;
    uint256 private constant VALUE = 0x20;
    uint256 private constant VALID_AFTER = 0x40;
    uint256 private constant VALID_BEFORE = 0x60;
    uint256 private constant NONCE = 0x80;
    uint256 private constant SIG_V = 0xa0;
    uint256 private constant SIG_R = 0xc0;
    uint256 private constant SIG_S = 0xe0;
    uint256 private constant ENTRY = 0x100;
    uint256 private constant RECEIPT = 0x120;
    uint256 private constant CREDITS = 0x140;
    uint256 private constant REFUND = 0x160;

    /// @dev Working state of one settle call, kept in memory so that storage is written once
    ///      per agent and once in total, not once per item. The tables are raw memory
    ///      regions of (key, value) word pairs, allocated once for the whole batch.
    struct Batch {
        uint256 agentTable; // (agentId, pending credit): agents known to exist
        uint256 agents;
        uint256 creditRow; // the current item's credits as agentTable addresses, checked then booked
        uint256 entryTable; // (entryAgentId, status): entry agents checked against msg.sender
        uint256 entries;
        uint256 refundTable; // (payer, pending refund); consecutive items of a payer share one
        uint256 payees;
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

    /// @notice Settle a batch of x402 payments; one status per item (0 = SETTLED).
    /// @dev The caller must be the registered signer of each item's entry agent.
    function settle(Item[] calldata items) external nonReentrant returns (uint8[] memory statuses) {
        uint256 n = items.length;
        statuses = new uint8[](n);
        Batch memory b = _newBatch(items);
        for (uint256 i; i < n; i = _inc(i)) {
            uint256 item;
            assembly ("memory-safe") {
                item := add(items.offset, calldataload(add(items.offset, shl(5, i))))
            }
            uint8 status = _settleItem(item, b);
            if (status != SETTLED) {
                statuses[i] = status;
                emit ItemRejected(i, bytes32(_word(item, RECEIPT)), status);
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
    //
    // Items are read from calldata by offset (see FROM .. REFUND) instead of through
    // Solidity's struct accessors: this loop runs once per payment and the accessors'
    // re-validation cost about as much as the rest of the bookkeeping together. A malformed
    // encoding reads as zeros or garbage, which fails the checks below like any bad item.

    function _settleItem(uint256 item, Batch memory b) private returns (uint8 status) {
        uint256 fromWord = _word(item, FROM);
        // A dirty address or v would make the token's own decoder revert; say so up front.
        if (fromWord >> 160 != 0 || _word(item, SIG_V) >> 8 != 0) return AUTHORIZATION_FAILED;

        status = _checkEntry(_word(item, ENTRY), b);
        if (status != SETTLED) return status;
        uint256 value = _word(item, VALUE);
        uint256 refund = _word(item, REFUND);
        (uint256 credits, uint256 count) = _credits(item);
        status = _checkCredits(credits, count, value, refund, b);
        if (status != SETTLED) return status;

        // The pull is the only way to a credit, and the token executes (from, nonce) at most
        // once: a second settle of this authorization, in this batch or a later one, fails
        // here with nothing moved. Nothing is booked before it succeeds.
        address from = address(uint160(fromWord));
        if (!_pull(item)) return _refusal(from, bytes32(_word(item, NONCE)));
        _bookCredits(credits, count, b);
        if (refund != 0) _bookRefund(from, refund, b);
        _emitSettled(item, from, refund, credits, count);
    }

    /// @dev sum(credits) + refund == value, computed by subtraction so no input can overflow,
    ///      and every credited agent exists. The first failing credit decides the status.
    function _checkCredits(uint256 credits, uint256 count, uint256 value, uint256 refund, Batch memory b)
        private
        view
        returns (uint8)
    {
        if (refund > value) return BAD_SPLIT;
        uint256 rest;
        unchecked {
            rest = value - refund;
        }
        for (uint256 j; j < count; j = _inc(j)) {
            (uint256 agentId, uint256 amount) = _credit(credits, j);
            if (amount > rest) return BAD_SPLIT;
            unchecked {
                rest -= amount;
            }
            uint256 entry = _agentEntry(agentId, b);
            if (entry == 0) return UNKNOWN_AGENT;
            uint256 row = b.creditRow;
            assembly ("memory-safe") {
                mstore(add(row, shl(5, j)), entry)
            }
        }
        return rest == 0 ? SETTLED : BAD_SPLIT;
    }

    /// @dev Executes transferWithAuthorization(from, this, ...) without reverting; the
    ///      item's calldata already holds the remaining arguments in the token's order.
    function _pull(uint256 item) private returns (bool ok) {
        address t = address(token);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0xe3ee160e))
            mstore(add(m, 0x04), calldataload(item)) // from
            mstore(add(m, 0x24), address()) // to
            calldatacopy(add(m, 0x44), add(item, VALUE), 0xe0) // value .. s
            ok := call(gas(), t, 0, m, 0x124, 0, 0)
        }
    }

    /// @dev Why the token refused the pull. Only read after a refusal, so settled items pay
    ///      nothing for it. A used nonce is never credited, even if someone else executed
    ///      the authorization and its money sits here: that payment would look exactly like
    ///      one this contract already credited (see contracts/README.md, front-running).
    function _refusal(address from, bytes32 nonce) private view returns (uint8) {
        return token.authorizationState(from, nonce) ? NONCE_USED : AUTHORIZATION_FAILED;
    }

    /// @dev Add the item's credits to the pending ones of their agents, at the table
    ///      addresses _checkCredits found.
    function _bookCredits(uint256 credits, uint256 count, Batch memory b) private pure {
        uint256 row = b.creditRow;
        assembly ("memory-safe") {
            for { let j := 0 } lt(j, count) { j := add(j, 1) } {
                let entry := add(mload(add(row, shl(5, j))), 0x20)
                // Cannot overflow: the sum is bounded by tokens the contract received.
                mstore(entry, add(mload(entry), calldataload(add(credits, add(shl(6, j), 0x20)))))
            }
        }
    }

    function _bookRefund(address payer, uint256 amount, Batch memory b) private pure {
        uint256 payees = b.payees;
        uint256 next;
        uint256 last;
        unchecked {
            next = b.refundTable + payees * 0x40; // inside the table allocated for the batch
            last = next - 0x40;
        }
        if (payees != 0) {
            (uint256 lastPayer, uint256 pending) = _pair(last);
            if (lastPayer == uint160(payer)) {
                assembly ("memory-safe") {
                    mstore(add(last, 0x20), add(pending, amount)) // bounded like the credits
                }
                return;
            }
        }
        assembly ("memory-safe") {
            mstore(next, payer)
            mstore(add(next, 0x20), amount)
        }
        unchecked {
            b.payees = payees + 1;
        }
    }

    /// @dev PaymentSettled(receiptHash, payer, nonce, refund, credits), the nonce and the
    ///      credits copied from calldata.
    function _emitSettled(uint256 item, address from, uint256 refund, uint256 credits, uint256 count) private {
        bytes32 topic = PaymentSettled.selector;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, calldataload(add(item, NONCE)))
            mstore(add(m, 0x20), refund)
            mstore(add(m, 0x40), 0x60) // offset of the credits array
            mstore(add(m, 0x60), count)
            let size := shl(6, count)
            calldatacopy(add(m, 0x80), credits, size)
            log3(m, add(0x80, size), topic, calldataload(add(item, RECEIPT)), from)
        }
    }

    // ---------------------------------------------------------------- calldata reads

    function _word(uint256 item, uint256 offset) private pure returns (uint256 word) {
        assembly ("memory-safe") {
            word := calldataload(add(item, offset))
        }
    }

    /// @dev Where the item's (agentId, amount) pairs start, and how many there are.
    function _credits(uint256 item) private pure returns (uint256 credits, uint256 count) {
        assembly ("memory-safe") {
            let array := add(item, calldataload(add(item, CREDITS)))
            count := calldataload(array)
            credits := add(array, 0x20)
        }
    }

    function _credit(uint256 credits, uint256 j) private pure returns (uint256 agentId, uint256 amount) {
        assembly ("memory-safe") {
            let pair := add(credits, shl(6, j))
            agentId := calldataload(pair)
            amount := calldataload(add(pair, 0x20))
        }
    }

    // ---------------------------------------------------------------- per-batch caches

    function _newBatch(Item[] calldata items) private pure returns (Batch memory b) {
        uint256 n = items.length;
        uint256 creditCount;
        uint256 widest;
        for (uint256 i; i < n; ++i) {
            uint256 item;
            assembly ("memory-safe") {
                item := add(items.offset, calldataload(add(items.offset, shl(5, i))))
            }
            (, uint256 count) = _credits(item);
            // Each credit takes 64 bytes of calldata: a larger count is a broken encoding, and
            // the tables below are sized from these counts, so refuse it before allocating.
            if (count > msg.data.length / 0x40) revert MalformedItems();
            creditCount += count;
            if (count > widest) widest = count;
        }
        b.agentTable = _allocPairs(creditCount);
        b.creditRow = _allocPairs(widest); // one word per credit would do; pairs keep one allocator
        b.entryTable = _allocPairs(n);
        b.refundTable = _allocPairs(n);
    }

    function _allocPairs(uint256 pairs) private pure returns (uint256 table) {
        uint256 size = pairs * 0x40; // checked
        assembly ("memory-safe") {
            table := mload(0x40)
            mstore(0x40, add(table, size))
        }
    }

    /// @dev SETTLED when msg.sender is entryAgentId's agentWallet or its "mesh-llm.signer"
    ///      address; UNKNOWN_AGENT when no such agent; NOT_ENTRY_SIGNER otherwise.
    function _checkEntry(uint256 entryAgentId, Batch memory b) private view returns (uint8 status) {
        uint256 table = b.entryTable;
        uint256 entries = b.entries;
        uint256 end;
        bool found;
        assembly ("memory-safe") {
            end := add(table, shl(6, entries))
            for { let entry := table } lt(entry, end) { entry := add(entry, 0x40) } {
                if eq(mload(entry), entryAgentId) {
                    status := mload(add(entry, 0x20))
                    found := 1
                    break
                }
            }
        }
        if (found) return status;
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
        assembly ("memory-safe") {
            mstore(end, entryAgentId)
            mstore(add(end, 0x20), status)
        }
        unchecked {
            ++b.entries; // at most one per item
        }
    }

    /// @dev Memory address of agentId's (id, pending credit) pair, asking the registry the
    ///      first time; 0 when the registry does not know the agent. 0 is a valid agentId.
    function _agentEntry(uint256 agentId, Batch memory b) private view returns (uint256 entry) {
        uint256 table = b.agentTable;
        uint256 agents = b.agents;
        uint256 end;
        assembly ("memory-safe") {
            end := add(table, shl(6, agents))
            for { entry := table } lt(entry, end) { entry := add(entry, 0x40) } {
                if eq(mload(entry), agentId) { break }
            }
        }
        if (entry < end) return entry;
        try identityRegistry.ownerOf(agentId) returns (address) {
            assembly ("memory-safe") {
                mstore(end, agentId)
                mstore(add(end, 0x20), 0)
            }
            b.agents = agents + 1;
            return end;
        } catch {
            return 0;
        }
    }

    /// @dev Write each agent's credit and the liabilities once, then pay the refunds
    ///      (interactions last).
    function _finish(Batch memory b) private {
        uint256 total;
        uint256 end = b.agentTable + b.agents * 0x40;
        for (uint256 entry = b.agentTable; entry < end; entry += 0x40) {
            (uint256 agentId, uint256 amount) = _pair(entry);
            if (amount != 0) {
                balanceOf[agentId] += amount;
                total += amount;
            }
        }
        if (total != 0) liabilities += total;
        end = b.refundTable + b.payees * 0x40;
        for (uint256 entry = b.refundTable; entry < end; entry += 0x40) {
            (uint256 payer, uint256 amount) = _pair(entry);
            _pay(address(uint160(payer)), amount);
        }
    }

    function _inc(uint256 j) private pure returns (uint256) {
        unchecked {
            return j + 1; // loop counters are bounded by calldata or memory sizes
        }
    }

    function _pair(uint256 entry) private pure returns (uint256 key, uint256 value) {
        assembly ("memory-safe") {
            key := mload(entry)
            value := mload(add(entry, 0x20))
        }
    }

    /// @dev token.transfer(to, amount), accepting a `true` or an empty answer (ERC-20 style);
    ///      hand-encoded because it runs once per refunded payer in every batch.
    function _pay(address to, uint256 amount) private {
        address t = address(token);
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0xa9059cbb))
            mstore(add(m, 0x04), to)
            mstore(add(m, 0x24), amount)
            ok := call(gas(), t, 0, m, 0x44, 0, 0x20)
            if ok {
                // Tokens that return nothing are accepted; one that answers must say true.
                if returndatasize() { ok := and(gt(returndatasize(), 0x1f), eq(mload(0), 1)) }
            }
        }
        if (!ok) revert TokenTransferFailed(to, amount);
    }
}
