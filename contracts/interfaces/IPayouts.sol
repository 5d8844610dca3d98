// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPayouts
/// @notice Royalty splits, distribution of a work's accrual to its payees, and pull withdrawals.
/// @dev A split is 1..32 payees in strictly ascending address order (so no zero address and no
///      duplicate) with non-zero basis points summing to 10,000. Every split given to `setSplit`
///      or `distribute` is checked against these rules in full, and must also match the work's
///      stored 160-bit commitment (kept beside the work's counters, in one slot). The full split
///      is in the `SplitSet` event. Shares are `amount * bps / 10_000` rounded down; the remainder
///      goes to the first payee (the lowest address), so the parts always add up to the whole.
interface IPayouts {
    /// @notice The split of a work was set (replacing any earlier one).
    event SplitSet(uint256 indexed workId, address[] payees, uint16[] bps);

    /// @notice The split of a work can no longer change.
    event SplitLocked(uint256 indexed workId);

    /// @notice `amount` of a work's accrual was credited to its payees under its current split.
    /// @dev Each payee's credit follows from the split of the latest `SplitSet` event of the work
    ///      by the rounding rule above; the indexer computes it the same way.
    event Distributed(uint256 indexed workId, uint256 amount);

    /// @notice A payee withdrew its whole balance to `to`.
    event Withdrawn(address indexed payee, address indexed to, uint256 amount);

    /// @notice A split needs at least one payee.
    error NoPayees();
    /// @notice A split has at most 32 payees.
    error TooManyPayees(uint256 count);
    /// @notice Payee and share arrays differ in length.
    error LengthMismatch(uint256 payees, uint256 shares);
    /// @notice A payee is the zero address.
    error ZeroAddressPayee(uint256 index);
    /// @notice A payee appears twice in a split.
    error DuplicatePayee(address payee);
    /// @notice Payees must be in strictly ascending address order; the one at `index` is not.
    error PayeesOutOfOrder(uint256 index);
    /// @notice A payee has a zero share.
    error ZeroShare(uint256 index);
    /// @notice Shares must sum to 10,000 basis points.
    error SharesDoNotTotal(uint256 sum);
    /// @notice A packed split word has bits set between its share (bits 0..15) and its payee (96..255).
    error DirtySplitWord(uint256 index);
    /// @notice The work's split is locked.
    error SplitIsLocked(uint256 workId);
    /// @notice The work has no split yet.
    error SplitNotSet(uint256 workId);
    /// @notice The split given does not match the work's stored split.
    error SplitMismatch(uint256 workId);
    /// @notice The payee has nothing to withdraw.
    error NothingToWithdraw(address payee);
    /// @notice Tokens cannot be sent to the zero address.
    error ZeroAddressRecipient();
    /// @notice Tokens sent to the ledger itself would be stranded (counted in no balance).
    error RecipientIsLedger();

    /// @notice Sets the split of a work. Work owner only, until locked. Money accrued under the
    ///         current split is first distributed under it, so pass the current split too
    ///         (empty arrays when the work has no split yet or nothing is pending).
    function setSplit(
        uint256 workId,
        address[] calldata payees,
        uint16[] calldata bps,
        address[] calldata currentPayees,
        uint16[] calldata currentBps
    ) external;

    /// @notice Locks the split of a work forever. Work owner only.
    function lockSplit(uint256 workId) external;

    /// @notice Credits a work's whole accrual to its payees. Anyone may call it.
    /// @return amount what was distributed (0 when nothing was pending)
    function distribute(uint256 workId, address[] calldata payees, uint16[] calldata bps)
        external
        returns (uint256 amount);

    /// @notice `distribute` with the split packed one word per payee: `uint256(payee) << 96 | bps`,
    ///         payees strictly ascending, bits 16..95 zero. The same split, the same rules (checked
    ///         in full), the same commitment and the same credits as `distribute`; about 650 gas
    ///         less of calldata for three payees (one array of words instead of two).
    /// @return amount what was distributed (0 when nothing was pending)
    function distributePacked(uint256 workId, uint256[] calldata split) external returns (uint256 amount);

    /// @notice Sends the caller's whole balance to `to`.
    function withdraw(address to) external returns (uint256 amount);

    /// @notice A payee's withdrawable balance.
    function balanceOf(address payee) external view returns (uint256);

    /// @notice A work's accrued, undistributed amount.
    function accruedOf(uint256 workId) external view returns (uint256);

    /// @notice How many licensed plays of a work were charged on chain.
    function playsOf(uint256 workId) external view returns (uint256);

    /// @notice The 160-bit commitment to a work's split (0 when unset).
    function splitCommitmentOf(uint256 workId) external view returns (uint160);

    /// @notice The commitment a split would have: the high 160 bits of
    ///         keccak256(abi.encodePacked(payees, bps)) (each element padded to 32 bytes).
    function splitCommitment(address[] calldata payees, uint16[] calldata bps) external pure returns (uint160);

    /// @notice Whether a work's split is locked.
    function isSplitLocked(uint256 workId) external view returns (bool);
}
