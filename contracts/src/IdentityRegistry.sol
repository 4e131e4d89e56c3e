// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ecdsa} from "./lib/Ecdsa.sol";

/// @notice ERC-721 receiver hook, called by safe mints and safe transfers to contracts.
interface IERC721Receiver {
    function onERC721Received(address operator, address from, uint256 tokenId, bytes calldata data)
        external
        returns (bytes4);
}

/// @title IdentityRegistry: the ERC-8004 v2.0.0 identity registry interface, for local chains.
/// @notice Agents are ERC-721 tokens ("AgentIdentity"/"AGENT") numbered from 0. Same external
///         functions, events (and their order), revert strings and AgentWalletSet EIP-712
///         proof as the reference registry, so code written against this one works against
///         the deployed registries. Not upgradeable: it exists for tests and local demos only;
///         real chains use the deployed ERC-8004 registries.
contract IdentityRegistry {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    // ERC-721 errors as in OpenZeppelin 5, which the reference registry uses.
    error ERC721NonexistentToken(uint256 tokenId);
    error ERC721InvalidReceiver(address receiver);
    error ERC721InvalidSender(address sender);
    error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner);
    error ERC721InsufficientApproval(address operator, uint256 tokenId);
    error ERC721InvalidApprover(address approver);
    error ERC721InvalidOperator(address operator);
    error ERC721InvalidOwner(address owner);

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
    /// @notice ERC-4906: the token URI changed.
    event MetadataUpdate(uint256 _tokenId);
    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    bytes32 private constant AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    uint256 private constant MAX_DEADLINE_DELAY = 5 minutes;
    string private constant AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant AGENT_WALLET_KEY_HASH = keccak256("agentWallet");

    string public constant name = "AgentIdentity";
    string public constant symbol = "AGENT";

    uint256 private _nextId;
    mapping(uint256 => address) private _owners;
    mapping(address => uint256) private _balances;
    mapping(uint256 => address) private _tokenApprovals;
    mapping(address => mapping(address => bool)) private _operatorApprovals;
    mapping(uint256 => string) private _tokenURIs;
    mapping(uint256 => mapping(string => bytes)) private _metadata;
    // Kept beside the "agentWallet" metadata bytes so getAgentWallet is one storage read.
    mapping(uint256 => address) private _agentWallet;

    // ---------------------------------------------------------------- ERC-8004

    function register() external returns (uint256 agentId) {
        agentId = _register();
        _registered(agentId, "");
    }

    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = _register();
        _setTokenURI(agentId, agentURI);
        _registered(agentId, agentURI);
    }

    function register(string calldata agentURI, MetadataEntry[] calldata metadata)
        external
        returns (uint256 agentId)
    {
        agentId = _register();
        _setTokenURI(agentId, agentURI);
        _registered(agentId, agentURI);
        for (uint256 i; i < metadata.length; ++i) {
            _setMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) external {
        require(_isAuthorized(msg.sender, agentId, _owners[agentId]), "Not authorized");
        _setMetadata(agentId, metadataKey, metadataValue);
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        require(_isAuthorized(msg.sender, agentId, ownerOf(agentId)), "Not authorized");
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    function tokenURI(uint256 agentId) external view returns (string memory) {
        ownerOf(agentId);
        return _tokenURIs[agentId];
    }

    /// @notice The agent's verified payment wallet, or address(0) after a transfer/unset.
    function getAgentWallet(uint256 agentId) external view returns (address) {
        ownerOf(agentId);
        return _agentWallet[agentId];
    }

    /// @notice Set the agent wallet with the new wallet's EIP-712 AgentWalletSet signature
    ///         (ECDSA, or ERC-1271 when `newWallet` is a contract).
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature)
        external
    {
        require(newWallet != address(0), "bad wallet");
        require(block.timestamp <= deadline, "expired");
        require(deadline <= block.timestamp + MAX_DEADLINE_DELAY, "deadline too far");
        address owner = ownerOf(agentId);
        require(_isAuthorized(msg.sender, agentId, owner), "Not authorized");

        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                DOMAIN_SEPARATOR(),
                keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline))
            )
        );
        if (newWallet.code.length == 0) {
            (address recovered, Ecdsa.Error err) = Ecdsa.tryRecover(signature, digest);
            require(err == Ecdsa.Error.None && recovered == newWallet, "invalid wallet sig");
        } else {
            require(Ecdsa.isValidErc1271(newWallet, digest, signature), "invalid wallet sig");
        }
        _writeAgentWallet(agentId, newWallet);
    }

    function unsetAgentWallet(uint256 agentId) external {
        require(_isAuthorized(msg.sender, agentId, ownerOf(agentId)), "Not authorized");
        _writeAgentWallet(agentId, address(0));
    }

    /// @notice True when `spender` owns `agentId` or may act for its owner.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        return _isAuthorized(spender, agentId, ownerOf(agentId));
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    /// @notice EIP-712 domain {name "ERC8004IdentityRegistry", version "1", chainId, this}.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256("ERC8004IdentityRegistry"),
                keccak256("1"),
                block.chainid,
                address(this)
            )
        );
    }

    // ---------------------------------------------------------------- ERC-721

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 // ERC-165
            || interfaceId == 0x80ac58cd // ERC-721
            || interfaceId == 0x5b5e139f // ERC-721 metadata
            || interfaceId == 0x49064906; // ERC-4906
    }

    function balanceOf(address owner) external view returns (uint256) {
        if (owner == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner];
    }

    function ownerOf(uint256 tokenId) public view returns (address owner) {
        owner = _owners[tokenId];
        if (owner == address(0)) revert ERC721NonexistentToken(tokenId);
    }

    function getApproved(uint256 tokenId) public view returns (address) {
        ownerOf(tokenId);
        return _tokenApprovals[tokenId];
    }

    function isApprovedForAll(address owner, address operator) public view returns (bool) {
        return _operatorApprovals[owner][operator];
    }

    function approve(address to, uint256 tokenId) external {
        address owner = ownerOf(tokenId);
        if (msg.sender != owner && !_operatorApprovals[owner][msg.sender]) revert ERC721InvalidApprover(msg.sender);
        _tokenApprovals[tokenId] = to;
        emit Approval(owner, to, tokenId);
    }

    function setApprovalForAll(address operator, bool approved) external {
        if (operator == address(0)) revert ERC721InvalidOperator(operator);
        _operatorApprovals[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function transferFrom(address from, address to, uint256 tokenId) public {
        if (to == address(0)) revert ERC721InvalidReceiver(address(0));
        address owner = ownerOf(tokenId);
        if (!_isAuthorized(msg.sender, tokenId, owner)) revert ERC721InsufficientApproval(msg.sender, tokenId);
        if (owner != from) revert ERC721IncorrectOwner(from, tokenId, owner);

        delete _tokenApprovals[tokenId];
        unchecked {
            _balances[from] -= 1;
            _balances[to] += 1;
        }
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
        // The verified wallet belongs to the old owner: a new owner must prove their own.
        if (from != to) _writeAgentWallet(tokenId, address(0));
    }

    function safeTransferFrom(address from, address to, uint256 tokenId) external {
        safeTransferFrom(from, to, tokenId, "");
    }

    function safeTransferFrom(address from, address to, uint256 tokenId, bytes memory data) public {
        transferFrom(from, to, tokenId);
        _checkReceiver(from, to, tokenId, data);
    }

    // ---------------------------------------------------------------- internals

    // Mint first, as the reference does (Transfer is the first event, then the receiver
    // hook for contract callers); the wallet is the caller until someone proves another.
    function _register() private returns (uint256 agentId) {
        agentId = _nextId++;
        _owners[agentId] = msg.sender;
        unchecked {
            _balances[msg.sender] += 1;
        }
        emit Transfer(address(0), msg.sender, agentId);
        _checkReceiver(address(0), msg.sender, agentId, "");
    }

    function _registered(uint256 agentId, string memory agentURI) private {
        emit Registered(agentId, agentURI, msg.sender);
        _writeAgentWallet(agentId, msg.sender);
    }

    function _setTokenURI(uint256 agentId, string calldata agentURI) private {
        _tokenURIs[agentId] = agentURI;
        emit MetadataUpdate(agentId);
    }

    function _setMetadata(uint256 agentId, string calldata key, bytes calldata value) private {
        require(keccak256(bytes(key)) != AGENT_WALLET_KEY_HASH, "reserved key");
        _metadata[agentId][key] = value;
        emit MetadataSet(agentId, key, key, value);
    }

    // The wallet lives twice: as an address for cheap reads and as the reserved metadata
    // key (20 raw bytes, empty when unset) that indexers read.
    function _writeAgentWallet(uint256 agentId, address wallet) private {
        _agentWallet[agentId] = wallet;
        bytes memory value = wallet == address(0) ? bytes("") : abi.encodePacked(wallet);
        _metadata[agentId][AGENT_WALLET_KEY] = value;
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, value);
    }

    function _isAuthorized(address spender, uint256 tokenId, address owner) private view returns (bool) {
        return spender != address(0)
            && (spender == owner || _operatorApprovals[owner][spender] || _tokenApprovals[tokenId] == spender);
    }

    function _checkReceiver(address from, address to, uint256 tokenId, bytes memory data) private {
        if (to.code.length == 0) return;
        try IERC721Receiver(to).onERC721Received(msg.sender, from, tokenId, data) returns (bytes4 answer) {
            if (answer != IERC721Receiver.onERC721Received.selector) revert ERC721InvalidReceiver(to);
        } catch (bytes memory reason) {
            if (reason.length == 0) revert ERC721InvalidReceiver(to);
            assembly ("memory-safe") {
                revert(add(reason, 0x20), mload(reason))
            }
        }
    }
}
