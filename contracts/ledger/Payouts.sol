// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";
import {SplitLib} from "../libraries/SplitLib.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Payouts
/// @notice Splits, distribution of accruals to payee balances, and pull withdrawals.
/// @dev A split is validated in full each time it is given (SplitLib.validate) and must match
///      the work's 160-bit commitment; credits use checked arithmetic, so even a split whose hash
///      collides with the stored one can only credit exactly the accrued amount.
abstract contract Payouts is LedgerBase, IPayouts {
    using SafeERC20 for IERC20;

    /// @inheritdoc IPayouts
    function setSplit(
        uint256 workId,
        address[] calldata payees,
        uint16[] calldata bps,
        address[] calldata currentPayees,
        uint16[] calldata currentBps
    ) external {
        _requireWorkOwner(workId);
        if (_splitLocked[workId]) revert SplitIsLocked(workId);
        uint160 next = SplitLib.validate(payees, bps);
        uint256 slot = _workSlots[workId];
        uint256 pending = slot & ACCRUED_MASK;
        if (pending != 0 && slot >> COMMITMENT_SHIFT != 0) {
            // Money accrued under the current split is paid under it before the change.
            _checkSplit(workId, slot, currentPayees, currentBps);
            slot -= pending;
            _credit(pending, currentPayees, currentBps);
            emit Distributed(workId, pending);
        }
        _workSlots[workId] = (slot & COUNTERS_MASK) | (uint256(next) << COMMITMENT_SHIFT);
        emit SplitSet(workId, payees, bps);
    }

    /// @inheritdoc IPayouts
    function lockSplit(uint256 workId) external {
        _requireWorkOwner(workId);
        if (_workSlots[workId] >> COMMITMENT_SHIFT == 0) revert SplitNotSet(workId);
        if (_splitLocked[workId]) revert SplitIsLocked(workId);
        _splitLocked[workId] = true;
        emit SplitLocked(workId);
    }

    /// @inheritdoc IPayouts
    function distribute(uint256 workId, address[] calldata payees, uint16[] calldata bps)
        external
        returns (uint256 amount)
    {
        uint256 slot = _workSlots[workId];
        _checkSplit(workId, slot, payees, bps);
        amount = slot & ACCRUED_MASK;
        if (amount == 0) return 0;
        _workSlots[workId] = slot - amount;
        _credit(amount, payees, bps);
        emit Distributed(workId, amount);
    }

    /// @inheritdoc IPayouts
    /// @dev Checks-effects-interactions: the balance is zeroed before the token call, so a
    ///      re-entrant call finds nothing to withdraw; no reentrancy guard is needed here.
    function withdraw(address to) external returns (uint256 amount) {
        _checkRecipient(to);
        address payee = _msgSender();
        amount = _balances[payee];
        if (amount == 0) revert NothingToWithdraw(payee);
        _balances[payee] = 0;
        token.safeTransfer(to, amount);
        emit Withdrawn(payee, to, amount);
    }

    /// @inheritdoc IPayouts
    function balanceOf(address payee) external view returns (uint256) {
        return _balances[payee];
    }

    /// @inheritdoc IPayouts
    function accruedOf(uint256 workId) external view returns (uint256) {
        return _workSlots[workId] & ACCRUED_MASK;
    }

    /// @inheritdoc IPayouts
    function playsOf(uint256 workId) external view returns (uint256) {
        return (_workSlots[workId] >> PLAYS_SHIFT) & PLAYS_MASK;
    }

    /// @inheritdoc IPayouts
    function splitCommitmentOf(uint256 workId) external view returns (uint160) {
        return uint160(_workSlots[workId] >> COMMITMENT_SHIFT);
    }

    /// @inheritdoc IPayouts
    function splitCommitment(address[] calldata payees, uint16[] calldata bps) external pure returns (uint160) {
        if (payees.length != bps.length) revert LengthMismatch(payees.length, bps.length);
        return SplitLib.commitment(payees, bps);
    }

    /// @inheritdoc IPayouts
    function isSplitLocked(uint256 workId) external view returns (bool) {
        return _splitLocked[workId];
    }

    /// @dev Reverts unless (payees, bps) is a valid split and the one committed in `slot`.
    function _checkSplit(uint256 workId, uint256 slot, address[] calldata payees, uint16[] calldata bps)
        private
        pure
    {
        uint256 committed = slot >> COMMITMENT_SHIFT;
        if (committed == 0) revert SplitNotSet(workId);
        if (SplitLib.validate(payees, bps) != committed) revert SplitMismatch(workId);
    }

    /// @dev Credits `amount` by a validated split: floor shares, the remainder to the first payee,
    ///      so the credits sum to exactly `amount`. Checked arithmetic throughout: the shares of a
    ///      split summing to 10,000 never exceed the amount, and if they ever did this reverts.
    function _credit(uint256 amount, address[] calldata payees, uint16[] calldata bps) private {
        uint256 rest = amount;
        uint256 n = payees.length;
        for (uint256 i = 1; i < n; ++i) {
            uint256 share = amount * bps[i] / SplitLib.TOTAL_BPS;
            rest -= share;
            _balances[payees[i]] += share;
        }
        _balances[payees[0]] += rest;
    }
}
