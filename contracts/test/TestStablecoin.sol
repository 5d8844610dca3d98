// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title TestStablecoin
/// @notice Devnet-only USD stablecoin with 6 decimals, an open faucet and ERC-2612 permits (as
///         USDC has). Test code: never part of a production deployment, where the ledger settles
///         in a real stablecoin.
contract TestStablecoin is ERC20, ERC20Permit {
    /// @notice The faucet hands out at most this much per call (10,000 tokens).
    uint256 public constant FAUCET_LIMIT = 10_000 * 1e6;

    /// @notice Asked the faucet for more than FAUCET_LIMIT.
    error FaucetLimitExceeded(uint256 requested, uint256 limit);

    constructor() ERC20("Test USD", "tUSD") ERC20Permit("Test USD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints up to FAUCET_LIMIT to `to`. Anyone may call it: this is a devnet token.
    function faucet(address to, uint256 amount) external {
        if (amount > FAUCET_LIMIT) revert FaucetLimitExceeded(amount, FAUCET_LIMIT);
        _mint(to, amount);
    }

    /// @notice Mints any amount: setup helper for tests and benchmarks on the devnet.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
