// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IPayouts} from "../interfaces/IPayouts.sol";

/// @title SplitLib
/// @notice Validation of royalty splits and the 160-bit commitment stored for them.
library SplitLib {
    uint256 internal constant TOTAL_BPS = 10_000;
    uint256 internal constant MAX_PAYEES = 32;
    // ---- literals for the assembly (inline assembly takes literal constants only) ----
    /// @dev log2 of an ABI word: element i of a calldata array is at offset + (i << 5).
    uint256 private constant WORD_SHIFT = 5;
    /// @dev A clean address word has nothing above bit 159; a clean uint16 nothing above bit 15.
    uint256 private constant ADDRESS_BITS = 160;
    uint256 private constant SHARE_BITS = 16;
    /// @dev 256 - 160: the commitment is the high 160 bits of the hash.
    uint256 private constant COMMITMENT_DROP_BITS = 96;
    /// @dev A packed split word is payee << 96 | share: the payee above bit 95, the share in
    ///      bits 0..15 and nothing in bits 16..95.
    uint256 internal constant PACKED_PAYEE_SHIFT = 96;
    uint256 internal constant PACKED_LOW_MASK = (1 << 96) - 1;

    /// @notice Checks a split in full (1..32 payees in strictly ascending address order, hence
    ///         no zero address and no duplicate; no zero share; shares summing to 10,000) and
    ///         returns its commitment. Run on every split the ledger is given, so even a split
    ///         whose hash collides with a stored commitment cannot credit more than the amount.
    function validate(address[] calldata payees, uint16[] calldata bps) internal pure returns (uint160) {
        uint256 n = payees.length;
        if (n == 0) revert IPayouts.NoPayees();
        if (n > MAX_PAYEES) revert IPayouts.TooManyPayees(n);
        if (bps.length != n) revert IPayouts.LengthMismatch(n, bps.length);
        if (payees[0] == address(0)) revert IPayouts.ZeroAddressPayee(0);
        uint256 sum;
        address previous;
        for (uint256 i; i < n; ++i) {
            address payee = payees[i];
            if (payee <= previous) {
                if (payee == previous) revert IPayouts.DuplicatePayee(payee);
                revert IPayouts.PayeesOutOfOrder(i);
            }
            uint256 share = bps[i];
            if (share == 0) revert IPayouts.ZeroShare(i);
            sum += share;
            previous = payee;
        }
        if (sum != TOTAL_BPS) revert IPayouts.SharesDoNotTotal(sum);
        return commitment(payees, bps);
    }

    /// @notice The commitment of (payees, bps) when it is a valid split (the rules of `validate`,
    ///         and every word clean: an address below 2**160, a share below 2**16), else 0.
    ///         One pass in assembly, for the hot paths; callers that get 0 call `validate`,
    ///         which reverts with the precise error (a valid split whose commitment happens to
    ///         be 0 gets it from `validate` too).
    function commitmentIfValid(address[] calldata payees, uint16[] calldata bps) internal pure returns (uint160 c) {
        assembly ("memory-safe") {
            let n := payees.length
            if and(and(iszero(iszero(n)), iszero(gt(n, MAX_PAYEES))), eq(bps.length, n)) {
                let previous := 0
                let sum := 0
                let bad := 0
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    let payee := calldataload(add(payees.offset, shl(WORD_SHIFT, i)))
                    let share := calldataload(add(bps.offset, shl(WORD_SHIFT, i)))
                    // Strictly ascending (hence non-zero and no duplicate), clean, share 1..65535.
                    bad := or(bad, or(or(iszero(gt(payee, previous)), shr(ADDRESS_BITS, payee)), or(iszero(share), shr(SHARE_BITS, share))))
                    previous := payee
                    sum := add(sum, share)
                }
                if iszero(or(bad, iszero(eq(sum, TOTAL_BPS)))) {
                    let m := mload(0x40)
                    let len := shl(WORD_SHIFT, n)
                    calldatacopy(m, payees.offset, len)
                    calldatacopy(add(m, len), bps.offset, len)
                    c := shr(COMMITMENT_DROP_BITS, keccak256(m, shl(1, len)))
                }
            }
        }
    }

    /// @notice High 160 bits of keccak256(abi.encodePacked(payees, bps)). Callers make sure the
    ///         two arrays have the same length, which makes the packed encoding unambiguous.
    ///      The words are hashed as they are in calldata: a non-canonical (dirty) encoding
    ///      hashes differently and so never matches a stored commitment.
    function commitment(address[] calldata payees, uint16[] calldata bps) internal pure returns (uint160 c) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            let a := shl(5, payees.length)
            let b := shl(5, bps.length)
            calldatacopy(m, payees.offset, a)
            calldatacopy(add(m, a), bps.offset, b)
            // 256 - 160 = 96: keep the high 160 bits of the hash.
            c := shr(COMMITMENT_DROP_BITS, keccak256(m, add(a, b)))
        }
    }

    /// @notice `validate` for a packed split (one word per payee: payee << 96 | share): reverts
    ///         with the precise error, else returns the commitment, the same as that of the
    ///         split as two arrays.
    function validatePacked(uint256[] calldata split) internal pure returns (uint160) {
        uint256 n = split.length;
        if (n == 0) revert IPayouts.NoPayees();
        if (n > MAX_PAYEES) revert IPayouts.TooManyPayees(n);
        if (split[0] >> PACKED_PAYEE_SHIFT == 0) revert IPayouts.ZeroAddressPayee(0);
        uint256 sum = 0;
        uint256 previous = 0;
        for (uint256 i; i < n; ++i) {
            uint256 payee = split[i] >> PACKED_PAYEE_SHIFT;
            uint256 share = split[i] & PACKED_LOW_MASK;
            if (payee <= previous) {
                if (payee == previous) revert IPayouts.DuplicatePayee(address(uint160(payee)));
                revert IPayouts.PayeesOutOfOrder(i);
            }
            if (share == 0) revert IPayouts.ZeroShare(i);
            if (share >> SHARE_BITS != 0) revert IPayouts.DirtySplitWord(i);
            sum += share;
            previous = payee;
        }
        if (sum != TOTAL_BPS) revert IPayouts.SharesDoNotTotal(sum);
        // Valid, so commitmentIfValid accepts it (it returns 0 only for a hash whose top 160
        // bits are all zero, which is then the commitment).
        return packedCommitmentIfValid(split);
    }

    /// @notice `commitmentIfValid` for a packed split: its commitment when it is a valid split
    ///         (the rules of `validate`, and nothing in bits 16..95 of any word), else 0. The
    ///         words are unpacked into memory as the two arrays of `commitment` (payees, then
    ///         shares), so a split has one commitment in either form.
    function packedCommitmentIfValid(uint256[] calldata split) internal pure returns (uint160 c) {
        assembly ("memory-safe") {
            let n := split.length
            if and(iszero(iszero(n)), iszero(gt(n, MAX_PAYEES))) {
                let m := mload(0x40)
                let sharesAt := add(m, shl(WORD_SHIFT, n))
                let previous := 0
                let sum := 0
                let bad := 0
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    let word := calldataload(add(split.offset, shl(WORD_SHIFT, i)))
                    let payee := shr(PACKED_PAYEE_SHIFT, word)
                    let share := and(word, PACKED_LOW_MASK)
                    // Strictly ascending (hence non-zero and no duplicate), share 1..65535 and
                    // nothing else in the low 96 bits.
                    bad := or(bad, or(iszero(gt(payee, previous)), or(iszero(share), shr(SHARE_BITS, share))))
                    previous := payee
                    sum := add(sum, share)
                    mstore(add(m, shl(WORD_SHIFT, i)), payee)
                    mstore(add(sharesAt, shl(WORD_SHIFT, i)), share)
                }
                if iszero(or(bad, iszero(eq(sum, TOTAL_BPS)))) {
                    c := shr(COMMITMENT_DROP_BITS, keccak256(m, shl(1, shl(WORD_SHIFT, n))))
                }
            }
        }
    }
}
