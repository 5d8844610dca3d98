// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IPayouts} from "../interfaces/IPayouts.sol";

/// @title SplitLib
/// @notice Validation of royalty splits and the 128-bit commitment stored for them.
library SplitLib {
    uint256 internal constant TOTAL_BPS = 10_000;
    uint256 internal constant MAX_PAYEES = 32;

    /// @notice Checks a split (1..32 payees, no zero address, no duplicate, no zero share,
    ///         shares summing to 10,000) and returns its commitment.
    function validate(address[] calldata payees, uint16[] calldata bps) internal pure returns (uint128) {
        uint256 n = payees.length;
        if (n == 0) revert IPayouts.NoPayees();
        if (n > MAX_PAYEES) revert IPayouts.TooManyPayees(n);
        if (bps.length != n) revert IPayouts.LengthMismatch(n, bps.length);
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            address payee = payees[i];
            if (payee == address(0)) revert IPayouts.ZeroAddressPayee(i);
            if (bps[i] == 0) revert IPayouts.ZeroShare(i);
            for (uint256 j; j < i; ++j) {
                if (payees[j] == payee) revert IPayouts.DuplicatePayee(payee);
            }
            sum += bps[i];
        }
        if (sum != TOTAL_BPS) revert IPayouts.SharesDoNotTotal(sum);
        return commitment(payees, bps);
    }

    /// @notice High 128 bits of keccak256(abi.encodePacked(payees, bps)). Callers make sure the
    ///         two arrays have the same length, which makes the packed encoding unambiguous.
    ///      The words are hashed as they are in calldata: a non-canonical (dirty) encoding
    ///      hashes differently and so never matches a stored commitment.
    function commitment(address[] calldata payees, uint16[] calldata bps) internal pure returns (uint128 c) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            let a := shl(5, payees.length)
            let b := shl(5, bps.length)
            calldatacopy(m, payees.offset, a)
            calldatacopy(add(m, a), bps.offset, b)
            c := shr(128, keccak256(m, add(a, b)))
        }
    }
}
