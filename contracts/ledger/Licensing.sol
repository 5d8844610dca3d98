// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ILicensing} from "../interfaces/ILicensing.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Licensing
/// @notice License terms, license purchases (fees accrue to the work) and licensee escrow.
abstract contract Licensing is LedgerBase, ReentrancyGuardTransient, ILicensing {
    using SafeERC20 for IERC20;

    /// @inheritdoc ILicensing
    /// @dev Seven days: devices that were offline and the relayer have that long to land the
    ///      batches of plays made before a withdrawal request.
    uint256 public constant ESCROW_NOTICE = 7 days;

    /// @inheritdoc ILicensing
    function setTerms(uint256 workId, LicenseKind kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
        external
    {
        _requireWorkOwner(workId);
        if (offered && duration == 0) revert ZeroDuration();
        if (kind == LicenseKind.FLAT) ratePerPlay = 0;
        if (ratePerPlay > MAX_RATE) revert RateTooHigh(ratePerPlay);
        _terms[workId][kind] = Terms(fee, ratePerPlay, duration, offered);
        emit TermsSet(workId, kind, fee, ratePerPlay, duration, offered);
    }

    /// @inheritdoc ILicensing
    function buyLicense(uint256 workId, LicenseKind kind, uint256 maxFee, uint32 maxRate, uint64 minExpiry)
        external
        nonReentrant
        returns (uint64 expiry)
    {
        uint256 fee;
        address buyer = _msgSender();
        (fee, expiry) = _license(buyer, workId, kind, maxRate, minExpiry);
        if (fee > maxFee) revert FeeAboveMax(fee, maxFee);
        if (fee != 0) token.safeTransferFrom(buyer, address(this), fee);
    }

    /// @inheritdoc ILicensing
    function buyLicenses(
        uint256[] calldata workIds,
        LicenseKind kind,
        uint256 maxTotalFee,
        uint32 maxRate,
        uint64 minExpiry
    ) external nonReentrant {
        if (workIds.length == 0) revert NoWorks();
        address buyer = _msgSender();
        uint256 total;
        for (uint256 i; i < workIds.length; ++i) {
            (uint256 fee,) = _license(buyer, workIds[i], kind, maxRate, minExpiry);
            total += fee;
        }
        if (total > maxTotalFee) revert FeeAboveMax(total, maxTotalFee);
        if (total != 0) token.safeTransferFrom(buyer, address(this), total);
    }

    /// @inheritdoc ILicensing
    function deposit(uint256 amount) external nonReentrant {
        address sender = _msgSender();
        _deposit(sender, sender, amount);
    }

    /// @inheritdoc ILicensing
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
    {
        address sender = _msgSender();
        // A permit front-run from the mempool has already set the allowance: go on with it
        // (OpenZeppelin's advice in IERC20Permit); a missing allowance fails in transferFrom.
        try IERC20Permit(address(token)).permit(sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(sender, sender, amount);
    }

    /// @inheritdoc ILicensing
    function depositFor(address licensee, uint256 amount) external nonReentrant {
        _checkRecipient(licensee); // escrow of the ledger itself could never be withdrawn
        _deposit(licensee, _msgSender(), amount);
    }

    /// @inheritdoc ILicensing
    function requestEscrowWithdrawal(uint256 amount) external returns (uint64 availableAt) {
        address licensee = _msgSender();
        uint32 index = _licenseeIndex[licensee];
        uint256 available = index == 0 ? 0 : _escrow[index];
        if (amount > available) revert InsufficientEscrow(available, amount);
        if (amount != 0) availableAt = uint64(block.timestamp + ESCROW_NOTICE);
        // amount <= escrow, and escrow <= token supply: fits 192 bits for any real token.
        _withdrawals[index] = WithdrawalRequest(uint192(amount), availableAt);
        emit EscrowWithdrawalRequested(licensee, amount, availableAt);
    }

    /// @inheritdoc ILicensing
    function withdrawEscrow(uint256 amount, address to) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _checkRecipient(to);
        address licensee = _msgSender();
        uint32 index = _licenseeIndex[licensee];
        WithdrawalRequest memory request = _withdrawals[index];
        if (amount > request.amount) revert WithdrawalNotRequested(request.amount, amount);
        if (block.timestamp < request.availableAt) revert WithdrawalNotYetAvailable(request.availableAt);
        uint256 available = _escrow[index];
        if (amount > available) revert InsufficientEscrow(available, amount);
        _escrow[index] = available - amount;
        _withdrawals[index].amount = uint192(request.amount - amount);
        token.safeTransfer(to, amount);
        emit EscrowWithdrawn(licensee, to, amount);
    }

    /// @inheritdoc ILicensing
    function escrowWithdrawalOf(address licensee) external view returns (uint256 amount, uint64 availableAt) {
        WithdrawalRequest memory request = _withdrawals[_licenseeIndex[licensee]];
        if (request.amount == 0) return (0, 0);
        return (request.amount, request.availableAt);
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
        (ratePerPlay, expiry,,) = meteredPeriodsOf(licensee, workId);
    }

    /// @inheritdoc ILicensing
    function meteredPeriodsOf(address licensee, uint256 workId)
        public
        view
        returns (uint32 ratePerPlay, uint64 expiry, uint32 prevRate, uint64 prevExpiry)
    {
        uint32 index = _licenseeIndex[licensee];
        if (index == 0) return (0, 0, 0, 0);
        (uint256 rate, uint256 end, uint256 pRate, uint256 pEnd) = _meteredPeriods(index, workId);
        return (uint32(rate), uint64(end), uint32(pRate), uint64(pEnd));
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

    /// @dev Grants or extends one period of a license to `buyer` and accrues its fee to the
    ///      work. The caller collects the fee.
    function _license(address buyer, uint256 workId, LicenseKind kind, uint32 maxRate, uint64 minExpiry)
        private
        returns (uint256 fee, uint64 expiry)
    {
        Terms memory t = _terms[workId][kind];
        if (!t.offered) revert TermsNotOffered(workId, kind);
        if (t.ratePerPlay > maxRate) revert RateAboveMax(t.ratePerPlay, maxRate);
        fee = t.fee;
        uint32 index = _licenseeIndexOrNew(buyer);
        uint256 prevRate;
        uint256 prevExpiry;
        if (kind == LicenseKind.FLAT) {
            expiry = _extend(_flatExpiry[buyer][workId], t.duration);
            _flatExpiry[buyer][workId] = expiry;
        } else {
            (expiry, prevRate, prevExpiry) = _extendMetered(index, workId, t.ratePerPlay, t.duration);
        }
        if (expiry < minExpiry) revert ExpiryBelowMin(expiry, minExpiry);
        _accrue(workId, fee);
        emit LicenseBought(buyer, workId, kind, fee, t.ratePerPlay, expiry, uint32(prevRate), uint64(prevExpiry));
    }

    /// @dev One more METERED period at `rate`. The same rate extends the current period; another
    ///      rate makes the current period the previous one, so plays keep the rate of the period
    ///      in which they were played (the period before the previous one merges into it).
    function _extendMetered(uint32 index, uint256 workId, uint256 rate, uint256 duration)
        private
        returns (uint64 expiry, uint256 prevRate, uint256 prevExpiry)
    {
        uint256 current;
        uint256 currentRate;
        (currentRate, current, prevRate, prevExpiry) = _meteredPeriods(index, workId);
        uint256 shift = (workId & 3) * LANE_BITS;
        if (current != 0 && currentRate != rate) {
            (prevRate, prevExpiry) = (currentRate, current);
            uint256 previous = _meteredPrevious[index][workId >> 2];
            uint256 prevLane = (prevRate << LANE_RATE_SHIFT) | prevExpiry;
            _meteredPrevious[index][workId >> 2] = (previous & ~(LANE_MASK << shift)) | (prevLane << shift);
        }
        expiry = _extend(current, duration);
        uint256 lane = (prevExpiry != 0 ? HAS_PREVIOUS : 0) | (rate << LANE_RATE_SHIFT) | expiry;
        uint256 word = _metered[index][workId >> 2];
        _metered[index][workId >> 2] = (word & ~(LANE_MASK << shift)) | (lane << shift);
    }

    /// @dev A new expiry: one period after the current expiry, or after now when it has passed.
    function _extend(uint256 current, uint256 duration) private view returns (uint64) {
        uint256 start = current > block.timestamp ? current : block.timestamp;
        uint256 expiry = start + duration;
        if (expiry > type(uint32).max) revert ExpiryOverflow(expiry);
        return uint64(expiry);
    }

    /// @dev A METERED license's current and previous periods (zeros when none).
    function _meteredPeriods(uint32 index, uint256 workId)
        internal
        view
        returns (uint256 rate, uint256 expiry, uint256 prevRate, uint256 prevExpiry)
    {
        uint256 shift = (workId & 3) * LANE_BITS;
        uint256 lane = (_metered[index][workId >> 2] >> shift) & LANE_MASK;
        expiry = lane & TIME_MASK;
        rate = (lane >> LANE_RATE_SHIFT) & MAX_RATE;
        if (lane & HAS_PREVIOUS != 0) {
            uint256 previous = (_meteredPrevious[index][workId >> 2] >> shift) & LANE_MASK;
            prevExpiry = previous & TIME_MASK;
            prevRate = previous >> LANE_RATE_SHIFT;
        }
    }

    function _deposit(address licensee, address from, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint32 index = _licenseeIndexOrNew(licensee);
        _escrow[index] += amount;
        token.safeTransferFrom(from, address(this), amount);
        emit EscrowDeposited(licensee, from, amount);
    }
}
