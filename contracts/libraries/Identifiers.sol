// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Identifiers
/// @notice Format checks for music and place identifiers kept on chain.
library Identifiers {
    /// @notice Whether `isrc` is a compact ISRC: `[A-Z]{2}[A-Z0-9]{3}[0-9]{7}` (ISO 3901; no check digit).
    function isValidIsrc(bytes12 isrc) internal pure returns (bool) {
        for (uint256 i; i < 12; ++i) {
            bytes1 c = isrc[i];
            bool upper = c >= "A" && c <= "Z";
            bool digit = c >= "0" && c <= "9";
            if (i < 2) {
                if (!upper) return false;
            } else if (i < 5) {
                if (!upper && !digit) return false;
            } else if (!digit) {
                return false;
            }
        }
        return true;
    }

    /// @notice Whether `code` is two upper-case letters (the shape of ISO 3166-1 alpha-2).
    function isValidTerritory(bytes2 code) internal pure returns (bool) {
        return code[0] >= "A" && code[0] <= "Z" && code[1] >= "A" && code[1] <= "Z";
    }
}
