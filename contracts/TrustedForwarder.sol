// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

/// @title TrustedForwarder
/// @notice OpenZeppelin's ERC2771Forwarder as deployed with the ledger (EIP-712 domain name
///         "RoyaltyLedgerForwarder", version "1"): users sign ForwardRequests, a relayer pays
///         the gas. No admin.
contract TrustedForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("RoyaltyLedgerForwarder") {}
}
