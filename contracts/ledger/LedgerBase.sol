// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {IWorkRegistry} from "../interfaces/IWorkRegistry.sol";
import {ILicensing} from "../interfaces/ILicensing.sol";

/// @title LedgerBase
/// @notice State shared by the ledger's modules (payouts, licensing, devices, plays).
/// @dev Money invariant (tested by property tests): the token balance of the ledger equals
///      the sum of licensee escrows + the sum of work accruals + the sum of payee balances.
///      Every function that moves tokens in or out changes exactly one of those sums by the
///      same amount; every internal move (play charge, fee accrual, distribution) takes from
///      one sum what it adds to another.
abstract contract LedgerBase {
    /// @dev Work slot: accrued (bits 0..79) | licensed plays (bits 80..127) | split commitment (128..255).
    uint256 internal constant ACCRUED_MASK = (1 << 80) - 1;
    uint256 internal constant PLAYS_SHIFT = 80;
    uint256 internal constant PLAYS_MASK = (1 << 48) - 1;
    uint256 internal constant COMMITMENT_SHIFT = 128;

    /// @dev Device slot: address (bits 0..159) | highest nonce used (160..191) | window (192..255),
    ///      bit i of the window marks nonce (highest - i) as used.
    uint256 internal constant ADDRESS_MASK = (1 << 160) - 1;

    /// @notice The settlement token, fixed at deployment.
    IERC20 public immutable token;
    /// @notice The registry of works (ERC-721) whose owners control splits and terms.
    IWorkRegistry public immutable works;

    mapping(uint256 workId => uint256) internal _workSlots;
    mapping(uint256 workId => bool) internal _splitLocked;
    mapping(address payee => uint256) internal _balances;

    mapping(uint256 workId => mapping(ILicensing.LicenseKind => Terms)) internal _terms;
    /// @dev METERED licenses: four 64-bit lanes per word, lane (workId & 3) of word (workId >> 2)
    ///      holds rate (high 32 bits) | expiry (low 32 bits).
    mapping(uint32 licensee => mapping(uint256 word => uint256)) internal _metered;
    mapping(address licensee => mapping(uint256 workId => uint64)) internal _flatExpiry;
    mapping(uint32 licensee => uint256) internal _escrow;
    mapping(address licensee => uint32) internal _licenseeIndex;
    mapping(uint32 licenseeIndex => address) internal _licensees;
    uint32 internal _licenseeCount;

    mapping(uint64 deviceId => uint256) internal _devices;
    mapping(uint64 deviceId => bool) internal _revoked;
    mapping(address device => uint64) internal _deviceIds;
    mapping(uint32 licensee => uint32) internal _deviceCounts;

    struct Terms {
        uint96 fee;
        uint32 ratePerPlay;
        uint32 duration;
        bool offered;
    }

    /// @notice Only the owner of the work may do this.
    error NotWorkOwner(uint256 workId, address account);
    /// @notice A work's accrual would overflow its 80-bit counter.
    error AccrualOverflow(uint256 workId);

    constructor(IERC20 token_, IWorkRegistry works_) {
        token = token_;
        works = works_;
    }

    function _requireWorkOwner(uint256 workId) internal view {
        if (IERC721(address(works)).ownerOf(workId) != msg.sender) revert NotWorkOwner(workId, msg.sender);
    }

    /// @dev Adds `amount` to a work's accrual.
    function _accrue(uint256 workId, uint256 amount) internal {
        if (amount == 0) return;
        uint256 slot = _workSlots[workId];
        if ((slot & ACCRUED_MASK) + amount > ACCRUED_MASK) revert AccrualOverflow(workId);
        _workSlots[workId] = slot + amount;
    }

    /// @dev The licensee index of `licensee`, assigned on first use.
    function _licenseeIndexOrNew(address licensee) internal returns (uint32 index) {
        index = _licenseeIndex[licensee];
        if (index == 0) {
            index = ++_licenseeCount;
            _licenseeIndex[licensee] = index;
            _licensees[index] = licensee;
            emit ILicensing.LicenseeRegistered(licensee, index);
        }
    }
}
