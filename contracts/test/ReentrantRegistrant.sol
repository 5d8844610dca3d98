// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721Receiver} from "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";
import {IWorkRegistry} from "../interfaces/IWorkRegistry.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";
import {ILicensing} from "../interfaces/ILicensing.sol";

/// @title ReentrantRegistrant
/// @notice Test-only: a contract registrant that, from onERC721Received, sets the split and the
///         terms of the work being minted (finding 2: their events must not come before the
///         work's own WorkRegistered event).
contract ReentrantRegistrant is IERC721Receiver {
    IWorkRegistry private immutable _works;
    address private immutable _ledger;

    constructor(IWorkRegistry works_, address ledger_) {
        _works = works_;
        _ledger = ledger_;
    }

    function register(string calldata uri) external returns (uint256) {
        return _works.registerWork(uri, bytes12(0));
    }

    function onERC721Received(address, address, uint256 workId, bytes calldata) external returns (bytes4) {
        address[] memory payees = new address[](1);
        payees[0] = address(this);
        uint16[] memory bps = new uint16[](1);
        bps[0] = 10_000;
        IPayouts(_ledger).setSplit(workId, payees, bps, new address[](0), new uint16[](0));
        ILicensing(_ledger).setTerms(workId, ILicensing.LicenseKind.METERED, 0, 5, 3_600, true);
        return IERC721Receiver.onERC721Received.selector;
    }
}
