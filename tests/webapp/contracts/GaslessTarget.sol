// SPDX-License-Identifier: MIT
// Test-only stand-in for a ledger contract behind OpenZeppelin's ERC2771Forwarder: it records
// _msgSender(), which must be the user who signed the ForwardRequest, not the relayer.
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";

contract GaslessTarget is ERC2771Context {
    event WorkRegistered(uint256 indexed workId, address indexed owner, string uri, bytes12 isrc);

    error IsrcAlreadyRegistered(bytes12 isrc);

    uint256 public totalWorks;
    mapping(uint256 workId => address) public ownerOf;
    mapping(bytes12 isrc => bool) public isrcTaken;

    constructor(address forwarder) ERC2771Context(forwarder) {}

    function registerWork(string calldata uri, bytes12 isrc) external returns (uint256 workId) {
        if (isrc != bytes12(0)) {
            if (isrcTaken[isrc]) revert IsrcAlreadyRegistered(isrc);
            isrcTaken[isrc] = true;
        }
        workId = ++totalWorks;
        ownerOf[workId] = _msgSender();
        emit WorkRegistered(workId, _msgSender(), uri, isrc);
    }
}
