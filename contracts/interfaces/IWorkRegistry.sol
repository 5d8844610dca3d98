// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";

/// @title IWorkRegistry
/// @notice Musical works as ERC-721 tokens. A work is minted to its registrant, who owns it and
///         may transfer it (selling a catalogue moves the token). An ISRC can be claimed once.
interface IWorkRegistry is IERC721 {
    /// @notice A work was registered.
    /// @param workId  the new token id (sequential from 1)
    /// @param owner   the registrant, first owner of the token
    /// @param isrc    the recording's ISRC in compact upper-case form, or zero when none was given
    /// @param uri     the metadata URI (title, ISWC, credits live there and in the index)
    event WorkRegistered(uint256 indexed workId, address indexed owner, bytes12 isrc, string uri);

    /// @notice The owner replaced the metadata URI of a work.
    event WorkURIUpdated(uint256 indexed workId, string uri);

    /// @notice This ISRC is already registered to another work.
    error IsrcAlreadyRegistered(bytes12 isrc, uint256 workId);

    /// @notice The ISRC is not of the form `[A-Z]{2}[A-Z0-9]{3}[0-9]{7}`.
    error InvalidIsrc(bytes12 isrc);

    /// @notice The metadata URI is empty.
    error EmptyUri();

    /// @notice Only the owner of the work may do this.
    error NotWorkOwner(uint256 workId, address account);

    /// @notice Mints a new work to the caller.
    /// @param uri   metadata URI, not empty
    /// @param isrc  compact ISRC, or zero for a work without a recording code
    /// @return workId the new token id
    function registerWork(string calldata uri, bytes12 isrc) external returns (uint256 workId);

    /// @notice Replaces a work's metadata URI. Owner only.
    function setWorkURI(uint256 workId, string calldata uri) external;

    /// @notice The work that holds an ISRC, or 0.
    function workIdByIsrc(bytes12 isrc) external view returns (uint256);

    /// @notice The ISRC of a work, or zero.
    function isrcOf(uint256 workId) external view returns (bytes12);

    /// @notice How many works were ever registered (ids 1..totalWorks()).
    function totalWorks() external view returns (uint256);
}
