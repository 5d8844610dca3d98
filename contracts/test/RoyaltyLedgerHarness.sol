// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IWorkRegistry} from "../interfaces/IWorkRegistry.sol";
import {RoyaltyLedger} from "../RoyaltyLedger.sol";

/// @title RoyaltyLedgerHarness
/// @notice Test-only: the ledger with back doors that stand in for states too costly to reach
///         honestly in a test (a split-hash collision found with ~2**80 work; 2**40 plays).
///         Never deployed outside tests.
contract RoyaltyLedgerHarness is RoyaltyLedger {
    constructor(IERC20 token_, IWorkRegistry works_, address forwarder_) RoyaltyLedger(token_, works_, forwarder_) {}

    /// @notice Replaces a work's split commitment, as a collision would let its owner do.
    function forceSplitCommitment(uint256 workId, uint160 commitment) external {
        _workSlots[workId] = (_workSlots[workId] & COUNTERS_MASK) | (uint256(commitment) << COMMITMENT_SHIFT);
    }

    /// @notice Sets a work's play counter (accrual untouched).
    function forcePlays(uint256 workId, uint256 plays) external {
        uint256 slot = _workSlots[workId];
        _workSlots[workId] = (slot & ~(PLAYS_MASK << PLAYS_SHIFT)) | ((plays & PLAYS_MASK) << PLAYS_SHIFT);
    }

    /// @notice Sets a payee's balance (tests of withdraw against a token the ledger cannot fund).
    function forceBalance(address payee, uint256 amount) external {
        _balances[payee] = amount;
    }
}
