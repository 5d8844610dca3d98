// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";
import {SplitLib} from "../libraries/SplitLib.sol";
import {TokenTransfer} from "../libraries/TokenTransfer.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Payouts
/// @notice Splits, distribution of accruals to payee balances, and pull withdrawals.
/// @dev A split is validated in full each time it is given (SplitLib.validate) and must match
///      the work's 160-bit commitment; credits use checked arithmetic, so even a split whose hash
///      collides with the stored one can only credit exactly the accrued amount.
abstract contract Payouts is LedgerBase, IPayouts {
    // ---- literals for the assembly of _credit (inline assembly takes literal constants only) ----
    /// @dev SplitLib.TOTAL_BPS.
    uint256 private constant SPLIT_TOTAL_BPS = 10_000;
    /// @dev log2 of an ABI word: element i of a calldata array is at offset + (i << 5).
    uint256 private constant WORD_SHIFT = 5;
    /// @dev SplitLib.PACKED_PAYEE_SHIFT, and the share bits of a validated packed split word.
    uint256 private constant PAYEE_SHIFT = 96;
    /// @dev The low 96 bits of a packed split word (share and the bits that must be zero), and
    ///      the share's width (SplitLib's SHARE_BITS).
    uint256 private constant LOW_BITS_MASK = 0xffffffffffffffffffffffff;
    uint256 private constant SHARE_BITS = 16;
    /// @dev SplitLib.MAX_PAYEES, ACCRUED_MASK and COMMITMENT_SHIFT (LedgerBase), and 256 - 160.
    uint256 private constant MAX_PAYEES_LITERAL = 32;
    uint256 private constant ACCRUED_MASK_LITERAL = 0xffffffffffffff;
    uint256 private constant COMMITMENT_SHIFT_LITERAL = 96;
    uint256 private constant COMMITMENT_DROP_BITS = 96;
    /// @dev SplitNotSet(uint256) and SplitMismatch(uint256) selectors, right-aligned, and the
    ///      Distributed(uint256,uint256) topic.
    uint256 private constant SPLIT_NOT_SET_SELECTOR = 0x45041578;
    uint256 private constant SPLIT_MISMATCH_SELECTOR = 0x583806fa;
    uint256 private constant DISTRIBUTED_EVENT = 0x97791d3ac1343e05805a2f905fa80b249c2ca58cf9fef455d4fa7ec13ce58321;
    /// @dev ACCRUED_MASK: no amount credited at once is larger (a work's accrual), so
    ///      amount * share (share < 2**16) cannot wrap.
    uint256 private constant CREDIT_LIMIT = 0xffffffffffffff;
    /// @dev Panic(uint256) selector, left-aligned, and its code for an arithmetic wrap: what
    ///      Solidity's checked arithmetic reverts with.
    uint256 private constant PANIC_SELECTOR = 0x4e487b7100000000000000000000000000000000000000000000000000000000;
    uint256 private constant PANIC_ARITHMETIC = 0x11;
    /// @dev NothingToWithdraw(address) selector, right-aligned.
    uint256 private constant NOTHING_TO_WITHDRAW_SELECTOR = 0xdc69dc16;
    /// @dev Withdrawn(address,address,uint256) topic.
    uint256 private constant WITHDRAWN_EVENT = 0xd1c19fbcd4551a5edfb66d43d2e337c04837afda3482b42bdf569a8fccdae5fb;

    /// @dev The literals above must equal what they copy (folds to nothing when they do).
    constructor() {
        if (
            SPLIT_TOTAL_BPS != SplitLib.TOTAL_BPS || PAYEE_SHIFT != SplitLib.PACKED_PAYEE_SHIFT
                || LOW_BITS_MASK != SplitLib.PACKED_LOW_MASK || MAX_PAYEES_LITERAL != SplitLib.MAX_PAYEES
                || ACCRUED_MASK_LITERAL != ACCRUED_MASK || COMMITMENT_SHIFT_LITERAL != COMMITMENT_SHIFT
                || SPLIT_NOT_SET_SELECTOR != uint32(SplitNotSet.selector)
                || SPLIT_MISMATCH_SELECTOR != uint32(SplitMismatch.selector)
                || DISTRIBUTED_EVENT != uint256(Distributed.selector) || CREDIT_LIMIT != ACCRUED_MASK || PANIC_SELECTOR != uint256(0x4e487b71) << 224
                || NOTHING_TO_WITHDRAW_SELECTOR != uint32(NothingToWithdraw.selector)
                || WITHDRAWN_EVENT != uint256(Withdrawn.selector)
                || TokenTransfer.TRANSFER_SELECTOR_WORD != uint256(uint32(IERC20.transfer.selector)) << 96
                || TokenTransfer.FAILED_OPERATION_SELECTOR != uint32(SafeERC20.SafeERC20FailedOperation.selector)) {
            revert();
        }
    }

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
    /// @dev The split is checked in full (SplitLib.packedCommitmentIfValid, then
    ///      SplitLib.validatePacked for the precise error) and must match the commitment; the
    ///      credits are those of `distribute` (`_creditPacked`, the same checked arithmetic).
    function distributePacked(uint256 workId, uint256[] calldata split) external returns (uint256 amount) {
        bool refused;
        assembly ("memory-safe") {
            function overflowed() {
                mstore(0x00, PANIC_SELECTOR)
                mstore(0x04, PANIC_ARITHMETIC)
                revert(0x00, 0x24)
            }
            mstore(0x00, workId)
            mstore(0x20, _workSlots.slot)
            let workSlot := keccak256(0x00, 0x40)
            let slot := sload(workSlot)
            amount := and(slot, ACCRUED_MASK_LITERAL)
            // One pass: check every word (strictly ascending payees, hence non-zero and no
            // duplicate; share 1..65535; nothing in bits 16..95), lay the split out in memory as
            // `SplitLib.commitment` hashes it (payees, then shares), and credit every payee but
            // the first its floor share. Those credits are undone by the revert below when the
            // split is refused or is not the committed one.
            let m := mload(0x40)
            let len := shl(WORD_SHIFT, split.length)
            let end := add(split.offset, len)
            // The first word (its credit comes last: its floor share and the remainder). 1..32
            // payees; a part larger than what is left (impossible for a valid split: the floors
            // of shares summing to 10,000 sum to at most the amount) refuses the split too.
            let previous := shr(PAYEE_SHIFT, calldataload(split.offset))
            let sum := and(calldataload(split.offset), LOW_BITS_MASK)
            let bad := or(or(iszero(len), gt(len, shl(WORD_SHIFT, MAX_PAYEES_LITERAL))), or(iszero(previous), or(iszero(sum), shr(SHARE_BITS, sum))))
            mstore(m, previous)
            mstore(add(m, len), sum)
            let rest := amount
            for { let p := add(split.offset, 0x20) } lt(p, end) { p := add(p, 0x20) } {
                let word := calldataload(p)
                let payee := shr(PAYEE_SHIFT, word)
                let share := and(word, LOW_BITS_MASK)
                bad := or(bad, or(iszero(gt(payee, previous)), or(iszero(share), shr(SHARE_BITS, share))))
                previous := payee
                sum := add(sum, share)
                let q := add(m, sub(p, split.offset))
                mstore(q, payee)
                mstore(add(q, len), share)
                // share < 2**96 and amount < 2**56: the product does not wrap.
                let part := div(mul(amount, share), SPLIT_TOTAL_BPS)
                bad := or(bad, gt(part, rest))
                rest := sub(rest, part)
                // Credit (a zero part when nothing is pending: then nothing is written).
                if part {
                    mstore(0x00, payee)
                    mstore(0x20, _balances.slot)
                    let b := keccak256(0x00, 0x40)
                    let credited := add(sload(b), part)
                    if lt(credited, part) { overflowed() }
                    sstore(b, credited)
                }
            }
            refused := or(bad, iszero(eq(sum, SPLIT_TOTAL_BPS)))
            if iszero(refused) {
                let committed := shr(COMMITMENT_SHIFT_LITERAL, slot)
                if iszero(committed) {
                    mstore(0x00, SPLIT_NOT_SET_SELECTOR)
                    mstore(0x20, workId)
                    revert(0x1c, 0x24)
                }
                if iszero(eq(committed, shr(COMMITMENT_DROP_BITS, keccak256(m, shl(1, len))))) {
                    mstore(0x00, SPLIT_MISMATCH_SELECTOR)
                    mstore(0x20, workId)
                    revert(0x1c, 0x24)
                }
                if amount {
                    // The first payee: its floor share and the rounding remainder.
                    mstore(0x00, shr(PAYEE_SHIFT, calldataload(split.offset)))
                    mstore(0x20, _balances.slot)
                    let b := keccak256(0x00, 0x40)
                    let credited := add(sload(b), rest)
                    if lt(credited, rest) { overflowed() }
                    sstore(b, credited)
                    sstore(workSlot, sub(slot, amount))
                    mstore(0x00, amount)
                    log2(0x00, 0x20, DISTRIBUTED_EVENT, workId)
                }
            }
        }
        if (refused) {
            // SplitNotSet when the work has none, else the precise error of the split; a split
            // validatePacked accepts was refused only for a part larger than the rest: Panic.
            if (_workSlots[workId] >> COMMITMENT_SHIFT == 0) revert SplitNotSet(workId);
            if (SplitLib.validatePacked(split) != 0) {
                assembly ("memory-safe") {
                    mstore(0x00, PANIC_SELECTOR)
                    mstore(0x04, PANIC_ARITHMETIC)
                    revert(0x00, 0x24)
                }
            }
            revert SplitMismatch(workId); // a valid split whose commitment is 0 (p = 2**-160)
        }
    }

    /// @inheritdoc IPayouts
    /// @dev Checks-effects-interactions: the balance is zeroed before the token call, so a
    ///      re-entrant call finds nothing to withdraw; no reentrancy guard is needed here.
    ///      The balance slot is read and cleared in assembly and the token is called through
    ///      TokenTransfer (SafeERC20's guarantees, no memory expansion).
    function withdraw(address to) external returns (uint256 amount) {
        _checkRecipient(to);
        address payee = _msgSender();
        assembly ("memory-safe") {
            mstore(0x00, payee)
            mstore(0x20, _balances.slot)
            let s := keccak256(0x00, 0x40)
            amount := sload(s)
            if iszero(amount) {
                mstore(0x00, NOTHING_TO_WITHDRAW_SELECTOR)
                mstore(0x20, payee)
                revert(0x1c, 0x24)
            }
            sstore(s, 0)
        }
        TokenTransfer.safeTransfer(address(token), to, amount);
        assembly ("memory-safe") {
            // emit Withdrawn(payee, to, amount), from the scratch space.
            mstore(0x00, amount)
            log3(0x00, 0x20, WITHDRAWN_EVENT, payee, to)
        }
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
    ///      SplitLib.commitmentIfValid checks the split in one pass of assembly; only a split it
    ///      refuses goes through SplitLib.validate, which reverts with the precise error.
    function _checkSplit(uint256 workId, uint256 slot, address[] calldata payees, uint16[] calldata bps)
        private
        pure
    {
        uint256 committed = slot >> COMMITMENT_SHIFT;
        if (committed == 0) revert SplitNotSet(workId);
        uint160 c = SplitLib.commitmentIfValid(payees, bps);
        if (c == 0) c = SplitLib.validate(payees, bps);
        if (c != committed) revert SplitMismatch(workId);
    }

    /// @dev Credits `amount` by a validated split: floor shares, the remainder to the first payee,
    ///      so the credits sum to exactly `amount`. Checked arithmetic throughout (Panic 0x11 on
    ///      a wrap, as Solidity's checked arithmetic): the shares of a split summing to 10,000
    ///      never exceed the amount, and if they ever did this reverts. amount < 2**56 and a
    ///      share < 2**16, so amount * share cannot wrap.
    function _credit(uint256 amount, address[] calldata payees, uint16[] calldata bps) private {
        uint256 balancesSlot;
        assembly ("memory-safe") {
            balancesSlot := _balances.slot
        }
        assembly ("memory-safe") {
            function credit(payee, value, base) {
                mstore(0x00, payee)
                mstore(0x20, base)
                let s := keccak256(0x00, 0x40)
                let credited := add(sload(s), value)
                if lt(credited, value) { overflowed() }
                sstore(s, credited)
            }
            function overflowed() {
                mstore(0x00, PANIC_SELECTOR)
                mstore(0x04, PANIC_ARITHMETIC)
                revert(0x00, 0x24)
            }
            if gt(amount, CREDIT_LIMIT) { overflowed() }
            let rest := amount
            let n := payees.length
            for { let i := 1 } lt(i, n) { i := add(i, 1) } {
                let share := div(mul(amount, calldataload(add(bps.offset, shl(WORD_SHIFT, i)))), SPLIT_TOTAL_BPS)
                if gt(share, rest) { overflowed() }
                rest := sub(rest, share)
                credit(calldataload(add(payees.offset, shl(WORD_SHIFT, i))), share, balancesSlot)
            }
            credit(calldataload(payees.offset), rest, balancesSlot)
        }
    }
}
