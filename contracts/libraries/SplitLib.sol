// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IPayouts} from "../interfaces/IPayouts.sol";

/// @title SplitLib
/// @notice Validation of royalty splits and the 160-bit commitment stored for them.
library SplitLib {
    uint256 internal constant TOTAL_BPS = 10_000;
    uint256 internal constant MAX_PAYEES = 32;

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
            c := shr(96, keccak256(m, add(a, b)))
        }
    }
}
