// SPDX-License-Identifier: MIT
// Test-only stand-in for the ledger contracts behind OpenZeppelin's ERC2771Forwarder, with the
// same function and event signatures as WorkRegistry / RoyaltyLedger for the portal's actions.
// It records _msgSender(), which must be the user who signed the ForwardRequest, not the relayer.
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";

contract GaslessTarget is ERC2771Context {
    event WorkRegistered(uint256 indexed workId, address indexed owner, string uri, bytes12 isrc);
    event SplitSet(uint256 indexed workId, address[] payees, uint16[] bps);
    event TermsSet(uint256 indexed workId, uint8 indexed kind, uint96 fee, uint32 ratePerPlay, uint32 duration,
                   bool offered);
    event Distributed(uint256 indexed workId, uint256 amount);
    event Withdrawn(address indexed payee, address indexed to, uint256 amount);

    error IsrcAlreadyRegistered(bytes12 isrc);
    error NotWorkOwner(uint256 workId, address caller);

    uint256 public totalWorks;
    mapping(uint256 workId => address) public ownerOf;
    mapping(bytes12 isrc => bool) public isrcTaken;
    mapping(address payee => uint256) public withdrawals;

    constructor(address forwarder) ERC2771Context(forwarder) {}

    modifier onlyOwner(uint256 workId) {
        if (ownerOf[workId] != _msgSender()) revert NotWorkOwner(workId, _msgSender());
        _;
    }

    function registerWork(string calldata uri, bytes12 isrc) external returns (uint256 workId) {
        if (isrc != bytes12(0)) {
            if (isrcTaken[isrc]) revert IsrcAlreadyRegistered(isrc);
            isrcTaken[isrc] = true;
        }
        workId = ++totalWorks;
        ownerOf[workId] = _msgSender();
        emit WorkRegistered(workId, _msgSender(), uri, isrc);
    }

    function setSplit(uint256 workId, address[] calldata payees, uint16[] calldata bps, address[] calldata,
                      uint16[] calldata) external onlyOwner(workId) {
        emit SplitSet(workId, payees, bps);
    }

    function setTerms(uint256 workId, uint8 kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
        external onlyOwner(workId)
    {
        emit TermsSet(workId, kind, fee, ratePerPlay, duration, offered);
    }

    function distribute(uint256 workId, address[] calldata, uint16[] calldata) external {
        emit Distributed(workId, 0);
    }

    function distributePacked(uint256 workId, uint256[] calldata) external {
        emit Distributed(workId, 0);
    }

    function withdraw(address to) external {
        withdrawals[_msgSender()] += 1;
        emit Withdrawn(_msgSender(), to, 0);
    }
}
