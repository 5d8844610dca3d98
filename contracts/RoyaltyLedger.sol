// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {IWorkRegistry} from "./interfaces/IWorkRegistry.sol";
import {LedgerBase} from "./ledger/LedgerBase.sol";
import {Payouts} from "./ledger/Payouts.sol";
import {Licensing} from "./ledger/Licensing.sol";
import {DeviceRegistry} from "./ledger/DeviceRegistry.sol";
import {PlayReporting} from "./ledger/PlayReporting.sol";

/// @title RoyaltyLedger
/// @notice Holds the money of the music ledger: licensee escrow, work accruals and payee
///         balances, in one ERC-20 fixed at deployment. Licenses, devices and play batches
///         live here too, so the play path never calls another contract.
/// @dev No owner, no admin, no upgrade path: nobody, the deployer included, can move anyone's
///      money. Conservation: token.balanceOf(this) == sum(escrow) + sum(accrued) + sum(balances),
///      as long as the token is a plain ERC-20 (no fee on transfer, no rebasing).
///      Gasless: requests relayed by the trusted ERC-2771 forwarder (fixed at deployment, no
///      admin) act for their signer; every module reads its caller with `_msgSender()`.
contract RoyaltyLedger is Payouts, Licensing, DeviceRegistry, PlayReporting, ERC2771Context {
    constructor(IERC20 token_, IWorkRegistry works_, address trustedForwarder_)
        LedgerBase(token_, works_)
        EIP712("RoyaltyLedger", "1")
        ERC2771Context(trustedForwarder_)
    {}

    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}
