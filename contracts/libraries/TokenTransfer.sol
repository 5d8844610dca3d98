// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TokenTransfer
/// @notice A lean `transfer` of an ERC-20 with the guarantees of OpenZeppelin's
///         SafeERC20.safeTransfer: it reverts when the call fails (with the token's revert data),
///         when the token returns anything but a true word, and when it returns nothing but has
///         no code; a token that returns nothing (USDT-style) and has code is accepted.
/// @dev The call is encoded in the scratch space and the word after it (0x10..0x53), as
///      Solady's SafeTransferLib does, so no memory is expanded; the part of the free-memory
///      pointer that the amount overwrites (0x40..0x53, which is zero for any pointer below
///      2**96) is zeroed again afterwards. Payouts' constructor checks the selector literals.
library TokenTransfer {
    /// @dev `transfer(address,uint256)`, right-aligned in the first word so that the selector
    ///      lands at 0x10..0x13 and the arguments at 0x14.. when the word is stored at 0x00.
    uint256 internal constant TRANSFER_SELECTOR_WORD = 0xa9059cbb000000000000000000000000;
    /// @dev The selector of OpenZeppelin's `SafeERC20FailedOperation(address)`, right-aligned,
    ///      the error a false or missing return is reported with (as before this library).
    uint256 internal constant FAILED_OPERATION_SELECTOR = 0x5274afe7;

    /// @notice Transfers `amount` of `token` from this contract to `to`, reverting on any failure.
    function safeTransfer(address token, address to, uint256 amount) internal {
        assembly ("memory-safe") {
            mstore(0x14, to)
            mstore(0x34, amount)
            mstore(0x00, TRANSFER_SELECTOR_WORD)
            let success := call(gas(), token, 0, 0x10, 0x44, 0x00, 0x20)
            if iszero(success) {
                // Bubble up the token's revert data, as SafeERC20 does (copied to 0: the free
                // memory pointer is overwritten now, and nothing runs after the revert).
                returndatacopy(0x00, 0x00, returndatasize())
                revert(0x00, returndatasize())
            }
            // Passes when it returned a true word (returndatasize >= 32: a shorter return leaves
            // byte 0x1f of the selector word, which is zero, in place), or returned nothing and
            // the token has code (checked only then: EXTCODESIZE costs 100 even when warm).
            if iszero(and(eq(mload(0x00), 1), gt(returndatasize(), 31))) {
                if iszero(and(iszero(returndatasize()), gt(extcodesize(token), 0))) {
                    mstore(0x00, FAILED_OPERATION_SELECTOR)
                    mstore(0x20, token)
                    revert(0x1c, 0x24)
                }
            }
            mstore(0x34, 0)
        }
    }
}
