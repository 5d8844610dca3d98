// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IWorkRegistry} from "./interfaces/IWorkRegistry.sol";
import {Identifiers} from "./libraries/Identifiers.sol";

/// @title WorkRegistry
/// @notice Musical works as ERC-721 tokens with a metadata URI and an optional ISRC that can be
///         claimed by one work only. Nobody but a work's owner (or an approved operator, per
///         ERC-721) can move it or change its URI; there is no admin.
contract WorkRegistry is ERC721, IWorkRegistry {
    uint256 private _lastWorkId;
    mapping(uint256 workId => string) private _uris;
    mapping(uint256 workId => bytes12) private _isrcs;
    mapping(bytes12 isrc => uint256 workId) private _workByIsrc;

    constructor() ERC721("Royalty Ledger Works", "WORK") {}

    /// @inheritdoc IWorkRegistry
    function registerWork(string calldata uri, bytes12 isrc) external returns (uint256 workId) {
        if (bytes(uri).length == 0) revert EmptyUri();
        workId = ++_lastWorkId;
        if (isrc != bytes12(0)) {
            if (!Identifiers.isValidIsrc(isrc)) revert InvalidIsrc(isrc);
            uint256 holder = _workByIsrc[isrc];
            if (holder != 0) revert IsrcAlreadyRegistered(isrc, holder);
            _workByIsrc[isrc] = workId;
            _isrcs[workId] = isrc;
        }
        _uris[workId] = uri;
        _safeMint(msg.sender, workId);
        emit WorkRegistered(workId, msg.sender, isrc, uri);
    }

    /// @inheritdoc IWorkRegistry
    function setWorkURI(uint256 workId, string calldata uri) external {
        if (_requireOwned(workId) != msg.sender) revert NotWorkOwner(workId, msg.sender);
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
}
