// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title QuirkyToken
/// @notice Test-only ERC-20 whose `transfer` misbehaves on demand, to test the ledger's token
///         call (TokenTransfer): it must accept a token that returns nothing (as USDT does) and
///         refuse one that returns false, one that reverts, and a short return.
contract QuirkyToken is ERC20 {
    enum Mode {
        Normal,
        ReturnsFalse,
        ReturnsNothing,
        Reverts,
        ReturnsShort
    }

    Mode public mode;

    constructor() ERC20("Quirky", "QRK") {}

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        Mode m = mode;
        if (m == Mode.ReturnsFalse) return false;
        if (m == Mode.Reverts) revert("QuirkyToken: transfer refused");
        _transfer(msg.sender, to, value);
        if (m == Mode.ReturnsNothing) {
            assembly {
                return(0, 0)
            }
        }
        if (m == Mode.ReturnsShort) {
            assembly {
                mstore(0, shl(248, 1))
                return(0, 1)
            }
        }
        return true;
    }
}
