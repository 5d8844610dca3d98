// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ILicensing} from "../interfaces/ILicensing.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Licensing
/// @notice License terms, license purchases (fees accrue to the work) and licensee escrow.
abstract contract Licensing is LedgerBase, ReentrancyGuardTransient, ILicensing {
    using SafeERC20 for IERC20;

    /// @inheritdoc ILicensing
    function setTerms(uint256 workId, LicenseKind kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
        external
    {
        _requireWorkOwner(workId);
        if (offered && duration == 0) revert ZeroDuration();
        if (kind == LicenseKind.FLAT) ratePerPlay = 0;
        _terms[workId][kind] = Terms(fee, ratePerPlay, duration, offered);
        emit TermsSet(workId, kind, fee, ratePerPlay, duration, offered);
    }

    /// @inheritdoc ILicensing
    function buyLicense(uint256 workId, LicenseKind kind, uint256 maxFee, uint32 maxRate)
        external
        nonReentrant
        returns (uint64 expiry)
    {
        uint256 fee;
        (fee, expiry) = _license(workId, kind, maxRate);
        if (fee > maxFee) revert FeeAboveMax(fee, maxFee);
        if (fee != 0) token.safeTransferFrom(msg.sender, address(this), fee);
    }

    /// @inheritdoc ILicensing
    function buyLicenses(uint256[] calldata workIds, LicenseKind kind, uint256 maxTotalFee, uint32 maxRate)
        external
        nonReentrant
    {
        if (workIds.length == 0) revert NoWorks();
        uint256 total;
        for (uint256 i; i < workIds.length; ++i) {
            (uint256 fee,) = _license(workIds[i], kind, maxRate);
            total += fee;
        }
        if (total > maxTotalFee) revert FeeAboveMax(total, maxTotalFee);
        if (total != 0) token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @inheritdoc ILicensing
    function deposit(uint256 amount) external nonReentrant {
        _deposit(msg.sender, amount);
    }

    /// @inheritdoc ILicensing
    function depositFor(address licensee, uint256 amount) external nonReentrant {
        if (licensee == address(0)) revert IPayouts.ZeroAddressRecipient();
        _deposit(licensee, amount);
    }

    /// @inheritdoc ILicensing
    function withdrawEscrow(uint256 amount, address to) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert IPayouts.ZeroAddressRecipient();
        uint32 index = _licenseeIndex[msg.sender];
        uint256 available = index == 0 ? 0 : _escrow[index];
        if (amount > available) revert InsufficientEscrow(available, amount);
        _escrow[index] = available - amount;
        token.safeTransfer(to, amount);
        emit EscrowWithdrawn(msg.sender, to, amount);
    }

    /// @inheritdoc ILicensing
    function termsOf(uint256 workId, LicenseKind kind)
        external
        view
        returns (uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
    {
        Terms memory t = _terms[workId][kind];
        return (t.fee, t.ratePerPlay, t.duration, t.offered);
    }

    /// @inheritdoc ILicensing
    function licenseOf(address licensee, uint256 workId, LicenseKind kind)
        external
        view
        returns (uint32 ratePerPlay, uint64 expiry)
    {
        if (kind == LicenseKind.FLAT) return (0, _flatExpiry[licensee][workId]);
        uint32 index = _licenseeIndex[licensee];
        if (index == 0) return (0, 0);
        uint256 lane = _meteredLane(index, workId);
        return (uint32(lane >> 32), uint64(uint32(lane)));
    }

    /// @inheritdoc ILicensing
    function escrowOf(address licensee) external view returns (uint256) {
        uint32 index = _licenseeIndex[licensee];
        return index == 0 ? 0 : _escrow[index];
    }

    /// @inheritdoc ILicensing
    function licenseeIndexOf(address licensee) external view returns (uint32) {
        return _licenseeIndex[licensee];
    }

    /// @inheritdoc ILicensing
    function licenseeAt(uint32 licenseeIndex) external view returns (address) {
        return _licensees[licenseeIndex];
    }

    /// @dev Grants or extends one period of a license to msg.sender and accrues its fee to the
    ///      work. The caller collects the fee.
    function _license(uint256 workId, LicenseKind kind, uint32 maxRate) private returns (uint256 fee, uint64 expiry) {
        Terms memory t = _terms[workId][kind];
        if (!t.offered) revert TermsNotOffered(workId, kind);
        if (t.ratePerPlay > maxRate) revert RateAboveMax(t.ratePerPlay, maxRate);
        fee = t.fee;
        uint32 index = _licenseeIndexOrNew(msg.sender);
        if (kind == LicenseKind.FLAT) {
            uint256 current = _flatExpiry[msg.sender][workId];
            expiry = _extend(current, t.duration);
            _flatExpiry[msg.sender][workId] = expiry;
        } else {
            uint256 shift = (workId & 3) * 64;
            uint256 word = _metered[index][workId >> 2];
            uint256 current = (word >> shift) & 0xffffffff;
            expiry = _extend(current, t.duration);
            uint256 lane = (uint256(t.ratePerPlay) << 32) | expiry;
            _metered[index][workId >> 2] = (word & ~(uint256(type(uint64).max) << shift)) | (lane << shift);
        }
        _accrue(workId, fee);
        emit LicenseBought(msg.sender, workId, kind, fee, t.ratePerPlay, expiry);
    }

    /// @dev A new expiry: one period after the current expiry, or after now when it has passed.
    function _extend(uint256 current, uint256 duration) private view returns (uint64) {
        uint256 start = current > block.timestamp ? current : block.timestamp;
        uint256 expiry = start + duration;
        if (expiry > type(uint32).max) revert ExpiryOverflow(expiry);
        return uint64(expiry);
    }

    function _meteredLane(uint32 index, uint256 workId) internal view returns (uint256) {
        return (_metered[index][workId >> 2] >> ((workId & 3) * 64)) & type(uint64).max;
    }

    function _deposit(address licensee, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint32 index = _licenseeIndexOrNew(licensee);
        _escrow[index] += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit EscrowDeposited(licensee, msg.sender, amount);
    }
}
