// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPlayReporting
/// @notice Play batches signed by devices (EIP-712), submitted many at a time by anyone.
/// @dev Signed type (domain: name "RoyaltyLedger", version "1", chainId, this contract):
///
///      PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)
///
///      `entries` is n records of 6 bytes: work id (uint32, big-endian) then play count
///      (uint16), work ids strictly increasing, counts at least 1, 1 <= n <= 1024.
///
///      Calldata of `submitBatches(bytes data)`, all integers big-endian:
///        data  = tableBits(uint8) group*
///        group = licenseeIndex(uint32) batchCount(uint16) batch*batchCount
///        batch = deviceNumber(uint32) nonce(uint32) fromTime(uint32) toTime(uint32) n(uint16)
///                entries(6n bytes) r(32 bytes) yParityAndS(32 bytes, EIP-2098)
///      The device id is licenseeIndex << 32 | deviceNumber. `tableBits` (4..14) sizes the
///      in-memory table of works touched by the call: 2**tableBits must exceed the number of
///      distinct works in the call (use twice that for speed); 15 and more would not fit the
///      gas of one transaction (128 bytes of memory per row).
///
///      Nonces are unordered and single-use per device key: a bitmap, bit (nonce & 255) of word
///      (nonce >> 8), so no order of submission can make another valid batch unusable.
///
///      A batch whose device id is unknown, or whose signature is not that device's, is skipped
///      silently (nothing attributable to the device: no event). A batch signed by the device is
///      skipped with BatchSkipped (nonce left unused) when its toTime is outside the device's
///      registration (after its revocation, or not after the key's previous revocation), its
///      times are out of order, zero or in the future, its nonce was used, its entries are
///      malformed, a work's counter would overflow, or its licensee's escrow cannot pay all of
///      it. Other batches still apply. Licensed plays are charged `count * rate` at the rate of
///      the license period in which toTime falls (see ILicensing); unlicensed plays are
///      recorded in the event and charged nothing.
interface IPlayReporting {
    /// @notice Why a batch was skipped. UnknownDevice and BadSignature are never logged (a batch
    ///         not signed by a registered device is attributable to nobody); they keep their
    ///         values so the codes stay stable.
    enum SkipReason {
        UnknownDevice,
        DeviceRevoked,
        BadTimeRange,
        NonceUsed,
        BadSignature,
        MalformedEntries,
        InsufficientEscrow,
        CounterOverflow
    }

    /// @notice The batches a call applied, one record after another:
    ///         deviceId(uint64) nonce(uint32) fromTime(uint32) toTime(uint32) charged(uint96)
    ///         n(uint16) entries(6n bytes, as signed).
    ///         Whether an entry was licensed, and at what rate, follows from the licensee's
    ///         `LicenseBought` events before this one (rate of the license, expiry >= toTime);
    ///         `charged` is the sum of count * rate over licensed entries.
    event PlaysRecorded(bytes records);

    /// @notice A batch was not applied.
    event BatchSkipped(uint64 indexed deviceId, uint32 nonce, SkipReason reason);

    /// @notice The calldata is truncated or a group is empty.
    /// @param offset where in the transaction input the bad group or batch starts (0: no data)
    error MalformedBatchData(uint256 offset);
    /// @notice The call touches more distinct works than its table holds.
    error WorkTableFull(uint256 capacity);
    /// @notice tableBits must be between 4 and 14.
    error BadTableBits(uint256 tableBits);

    /// @notice Applies signed play batches; see the encoding above.
    /// @return applied how many batches were applied
    function submitBatches(bytes calldata data) external returns (uint256 applied);

    /// @notice The EIP-712 digest a device signs for a batch.
    function playBatchDigest(address device, uint256 nonce, uint64 fromTime, uint64 toTime, bytes calldata entries)
        external
        view
        returns (bytes32);

    /// @notice How far in the future a batch's toTime may be, in seconds.
    function maxClockSkew() external pure returns (uint256);
}
