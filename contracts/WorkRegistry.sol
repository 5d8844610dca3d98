// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {IWorkRegistry} from "./interfaces/IWorkRegistry.sol";
import {Identifiers} from "./libraries/Identifiers.sol";

/// @title WorkRegistry
/// @notice Musical works as ERC-721 tokens with a metadata URI and an optional ISRC that can be
///         claimed by one work only. Nobody but a work's owner (or an approved operator, per
///         ERC-721) can move it or change its URI; there is no admin.
/// @dev Gasless: requests relayed by the trusted ERC-2771 forwarder (fixed at deployment) act
///      for their signer. Every caller check, the inherited ERC-721 ones included, goes
///      through `_msgSender()`.
contract WorkRegistry is ERC721, ERC2771Context, IWorkRegistry {
    uint256 private _lastWorkId;
    mapping(uint256 workId => string) private _uris;
    mapping(uint256 workId => bytes12) private _isrcs;
    mapping(bytes12 isrc => uint256 workId) private _workByIsrc;

    constructor(address trustedForwarder_) ERC721("Royalty Ledger Works", "WORK") ERC2771Context(trustedForwarder_) {}

    /// @inheritdoc IWorkRegistry
    /// @dev Checks-effects-interactions: the work and its WorkRegistered event are complete
    ///      before `_safeMint` calls a contract registrant's onERC721Received.
    function registerWork(string calldata uri, bytes12 isrc) external returns (uint256 workId) {
        if (bytes(uri).length == 0) revert EmptyUri();
        address owner = _msgSender();
        workId = ++_lastWorkId;
        if (isrc != bytes12(0)) {
            if (!Identifiers.isValidIsrc(isrc)) revert InvalidIsrc(isrc);
            uint256 holder = _workByIsrc[isrc];
            if (holder != 0) revert IsrcAlreadyRegistered(isrc, holder);
            _workByIsrc[isrc] = workId;
            _isrcs[workId] = isrc;
        }
        _uris[workId] = uri;
        emit WorkRegistered(workId, owner, isrc, uri);
        _safeMint(owner, workId);
    }

    /// @inheritdoc IWorkRegistry
    function setWorkURI(uint256 workId, string calldata uri) external {
        address sender = _msgSender();
        if (_requireOwned(workId) != sender) revert NotWorkOwner(workId, sender);
        if (bytes(uri).length == 0) revert EmptyUri();
        _uris[workId] = uri;
        emit WorkURIUpdated(workId, uri);
    }

    /// @inheritdoc IWorkRegistry
    function workIdByIsrc(bytes12 isrc) external view returns (uint256) {
        return _workByIsrc[isrc];
    }

    /// @inheritdoc IWorkRegistry
    function isrcOf(uint256 workId) external view returns (bytes12) {
        _requireOwned(workId);
        return _isrcs[workId];
    }

    /// @inheritdoc IWorkRegistry
    function totalWorks() external view returns (uint256) {
        return _lastWorkId;
    }

    /// @notice The metadata URI of a work.
    function tokenURI(uint256 workId) public view override returns (string memory) {
        _requireOwned(workId);
        return _uris[workId];
    }

    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}
