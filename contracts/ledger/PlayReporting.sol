// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IPlayReporting} from "../interfaces/IPlayReporting.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title PlayReporting
/// @notice The play-batch path: many device-signed batches per call, each verified, charged
///         from its licensee's escrow and counted, or skipped whole with a reason.
/// @dev Built for gas (see docs/gas.md). Per call, an in-memory open-addressing table keyed by
///      work id accumulates plays and amounts (written to storage once per work at the end) and
///      caches each work's license lane per licensee group; escrow is read and written once per
///      group; a device's slot is read and written once per batch; one event carries every
///      applied batch. Memory layout of the call:
///        ctx   (fixed 0x180 bytes)  the call's state, see CTX_* offsets
///        table (64 << tableBits)    word 0: key | plays << 32 | amount << 96; word 1: tag << 64 | lane
///        event buffer               0x20 | length | records..., grows as batches are applied
///      The free memory pointer is kept just past the record being written, so the scratch
///      memory that OpenZeppelin's EIP712/ECDSA use never overwrites live data.
abstract contract PlayReporting is LedgerBase, EIP712, IPlayReporting {
    bytes32 private constant PLAY_BATCH_TYPEHASH =
        keccak256("PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)");
    uint256 private constant MAX_CLOCK_SKEW = 15 minutes;
    uint256 private constant MAX_ENTRIES = 1024;
    uint256 private constant BATCH_FIXED_BYTES = 18 + 64;
    /// @dev Not a SkipReason: the batch passed a check.
    uint256 private constant APPLY = 255;

    uint256 private constant CTX_TABLE = 0x00;
    uint256 private constant CTX_MASK = 0x20;
    uint256 private constant CTX_CURSOR = 0x40;
    uint256 private constant CTX_LICENSEE = 0x60;
    uint256 private constant CTX_LICENSE_BASE = 0x80;
    uint256 private constant CTX_TAG = 0xa0;
    uint256 private constant CTX_ESCROW = 0xc0;
    uint256 private constant CTX_USED = 0xe0;
    uint256 private constant CTX_END = 0x100;
    uint256 private constant CTX_APPLIED = 0x120;
    uint256 private constant CTX_SIZE = 0x140;
    uint256 private constant CTX_BUFFER = 0x160;
    uint256 private constant CTX_CHARGE = 0x180;
    uint256 private constant CTX_TO_TIME = 0x1a0;
    uint256 private constant CTX_BYTES = 0x1c0;
    /// @dev bytes4(keccak256("WorkTableFull(uint256)")), checked by the tests.
    uint256 private constant WORK_TABLE_FULL = 0x8e1f3ac5;

    /// @inheritdoc IPlayReporting
    function submitBatches(bytes calldata data) external returns (uint256 applied) {
        if (data.length == 0) revert MalformedBatchData(0);
        uint256 bits = uint8(data[0]);
        if (bits < 4 || bits > 16) revert BadTableBits(bits);
        uint256 p;
        uint256 end;
        assembly {
            p := add(data.offset, 1)
            end := add(data.offset, data.length)
        }
        uint256 ctx = _newContext(bits, end);
        while (p < end) {
            p = _processGroup(ctx, p, end);
        }
        _flushWorks(ctx);
        applied = _emitRecords(ctx);
    }

    /// @inheritdoc IPlayReporting
    function playBatchDigest(address device, uint256 nonce, uint64 fromTime, uint64 toTime, bytes calldata entries)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(PLAY_BATCH_TYPEHASH, device, nonce, fromTime, toTime, keccak256(entries)))
        );
    }

    /// @inheritdoc IPlayReporting
    function maxClockSkew() external pure returns (uint256) {
        return MAX_CLOCK_SKEW;
    }

    /// @dev Lays out ctx, the zeroed work table and the event buffer.
    function _newContext(uint256 bits, uint256 end) private pure returns (uint256 ctx) {
        assembly ("memory-safe") {
            ctx := mload(0x40)
            let size := shl(bits, 1)
            let table := add(ctx, CTX_BYTES)
            let tableBytes := shl(6, size)
            // Zero ctx and table (fresh memory is not guaranteed to be zero).
            calldatacopy(ctx, calldatasize(), add(CTX_BYTES, tableBytes))
            let buffer := add(table, tableBytes)
            mstore(add(ctx, CTX_TABLE), table)
            mstore(add(ctx, CTX_MASK), sub(size, 1))
            mstore(add(ctx, CTX_SIZE), size)
            mstore(add(ctx, CTX_END), end)
            mstore(add(ctx, CTX_BUFFER), buffer)
            mstore(add(ctx, CTX_CURSOR), add(buffer, 0x40))
            mstore(0x40, add(buffer, 0x80))
        }
    }

    /// @dev One licensee's batches: escrow read once, written once.
    function _processGroup(uint256 ctx, uint256 p, uint256 end) private returns (uint256) {
        if (p + 6 > end) revert MalformedBatchData(p);
        uint256 head;
        assembly {
            head := calldataload(p)
        }
        uint32 licensee = uint32(head >> 224);
        uint256 count = (head >> 208) & 0xffff;
        if (count == 0) revert MalformedBatchData(p);
        p += 6;
        uint256 escrow = _escrow[licensee];
        assembly {
            mstore(add(ctx, CTX_LICENSEE), licensee)
            mstore(0x00, licensee)
            mstore(0x20, _metered.slot)
            mstore(add(ctx, CTX_LICENSE_BASE), keccak256(0x00, 0x40))
            mstore(add(ctx, CTX_TAG), add(mload(add(ctx, CTX_TAG)), 1))
            mstore(add(ctx, CTX_ESCROW), escrow)
        }
        for (uint256 i; i < count; ++i) {
            p = _processBatch(ctx, p, end);
        }
        uint256 left;
        assembly {
            left := mload(add(ctx, CTX_ESCROW))
        }
        if (left != escrow) _escrow[licensee] = left;
        return p;
    }

    /// @dev Verifies, charges and records one batch, or skips it with a reason.
    function _processBatch(uint256 ctx, uint256 p, uint256 end) private returns (uint256 next) {
        uint256 head;
        assembly {
            head := calldataload(p)
        }
        uint256 n = (head >> 112) & 0xffff;
        next = p + BATCH_FIXED_BYTES + 6 * n;
        if (next > end) revert MalformedBatchData(p);
        uint64 deviceId;
        uint256 slot;
        assembly {
            deviceId := or(shl(32, mload(add(ctx, CTX_LICENSEE))), shr(224, head))
            mstore(0x00, deviceId)
            mstore(0x20, _devices.slot)
            slot := keccak256(0x00, 0x40)
        }
        uint256 state;
        assembly {
            state := sload(slot)
        }
        uint32 nonce = uint32(head >> 192);
        uint256 toTime = (head >> 128) & 0xffffffff;
        (uint256 reason, uint256 newState) = _checkHeader(deviceId, state, head, n);
        if (reason == APPLY) {
            reason = _verifyAndCharge(ctx, p, n, state, toTime);
        }
        if (reason != APPLY) {
            emit BatchSkipped(deviceId, nonce, SkipReason(reason));
            return next;
        }
        assembly {
            sstore(slot, newState)
        }
        _appendRecord(ctx, deviceId, head, p + 18, n);
    }

    /// @dev Device, time and nonce checks. Returns APPLY when the batch may proceed,
    ///      with the device's slot as it will be once the batch is applied.
    function _checkHeader(uint64 deviceId, uint256 state, uint256 head, uint256 n)
        private
        view
        returns (uint256, uint256)
    {
        if (state & ADDRESS_MASK == 0) {
            return (uint256(_revoked[deviceId] ? SkipReason.DeviceRevoked : SkipReason.UnknownDevice), 0);
        }
        uint256 fromTime = (head >> 160) & 0xffffffff;
        uint256 toTime = (head >> 128) & 0xffffffff;
        if (fromTime > toTime || toTime > block.timestamp + MAX_CLOCK_SKEW) return (uint256(SkipReason.BadTimeRange), 0);
        if (n == 0 || n > MAX_ENTRIES) return (uint256(SkipReason.MalformedEntries), 0);
        uint256 nonce = (head >> 192) & 0xffffffff;
        uint256 top = (state >> 160) & 0xffffffff;
        uint256 window = state >> 192;
        unchecked {
            if (nonce > top) {
                uint256 shift = nonce - top;
                window = shift >= 64 ? 1 : ((window << shift) | 1) & type(uint64).max;
                top = nonce;
            } else {
                uint256 distance = top - nonce;
                if (distance >= 64 || (window >> distance) & 1 == 1) return (uint256(SkipReason.NonceUsed), 0);
                window |= 1 << distance;
            }
        }
        return (APPLY, (state & ADDRESS_MASK) | (top << 160) | (window << 192));
    }

    /// @dev Signature check, then charge. Returns APPLY when applied, else the skip reason.
    function _verifyAndCharge(uint256 ctx, uint256 p, uint256 n, uint256 state, uint256 toTime)
        private
        view
        returns (uint256)
    {
        if (!_signedByDevice(ctx, p, n, address(uint160(state)))) return uint256(SkipReason.BadSignature);
        uint256 entries = p + 18;
        assembly {
            mstore(add(ctx, CTX_TO_TIME), toTime)
        }
        (uint256 charge, uint256 done) = _applyEntries(ctx, entries, n);
        if (done != n) {
            _undoEntries(ctx, entries, done);
            return uint256(SkipReason.MalformedEntries);
        }
        uint256 escrow;
        assembly {
            escrow := mload(add(ctx, CTX_ESCROW))
        }
        if (charge > escrow) {
            _undoEntries(ctx, entries, n);
            return uint256(SkipReason.InsufficientEscrow);
        }
        assembly {
            mstore(add(ctx, CTX_ESCROW), sub(escrow, charge))
            mstore(add(ctx, CTX_APPLIED), add(mload(add(ctx, CTX_APPLIED)), 1))
            mstore(add(ctx, CTX_CHARGE), charge)
        }
        return APPLY;
    }

    /// @dev Whether the batch at `p` carries `device`'s EIP-712 signature (EIP-2098 compact).
    function _signedByDevice(uint256 ctx, uint256 p, uint256 n, address device) private view returns (bool) {
        bytes32 typeHash = PLAY_BATCH_TYPEHASH;
        bytes32 structHash;
        bytes32 r;
        bytes32 vs;
        assembly {
            let entries := add(p, 18)
            let entriesLength := mul(6, n)
            // The record is written at the cursor later; its entries area doubles as scratch here.
            let scratch := add(mload(add(ctx, CTX_CURSOR)), 34)
            // Keep Solidity's scratch use (at the free memory pointer) beyond this batch's record.
            mstore(0x40, add(scratch, add(entriesLength, 0xe0)))
            calldatacopy(scratch, entries, entriesLength)
            let entriesHash := keccak256(scratch, entriesLength)
            let head := calldataload(p)
            mstore(scratch, typeHash)
            mstore(add(scratch, 0x20), and(device, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(scratch, 0x40), and(shr(192, head), 0xffffffff))
            mstore(add(scratch, 0x60), and(shr(160, head), 0xffffffff))
            mstore(add(scratch, 0x80), and(shr(128, head), 0xffffffff))
            mstore(add(scratch, 0xa0), entriesHash)
            structHash := keccak256(scratch, 0xc0)
            r := calldataload(add(entries, entriesLength))
            vs := calldataload(add(entries, add(entriesLength, 0x20)))
        }
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), r, vs);
        return err == ECDSA.RecoverError.NoError && signer == device;
    }

    /// @dev Adds the licensed plays of `n` entries to the work table, for a batch ending at
    ///      ctx's toTime. Stops at the first malformed entry (work ids not strictly increasing,
    ///      or a zero count) and returns how many entries it handled.
    ///      Hot loop: per entry one calldata load, one table probe (ids are mostly sequential,
    ///      so the first probe hits), one cached license lane and one memory add.
    function _applyEntries(uint256 ctx, uint256 entries, uint256 n) private view returns (uint256 charge, uint256 done) {
        assembly {
            // Finds the row of work `w`, inserting it when absent (linear probing).
            function findRow(c, t, m, w) -> e {
                let i := and(w, m)
                for {} 1 {} {
                    e := add(t, shl(6, i))
                    let key := and(mload(e), 0xffffffff)
                    if eq(key, w) { leave }
                    if iszero(key) {
                        let used := add(mload(add(c, CTX_USED)), 1)
                        if iszero(lt(used, mload(add(c, CTX_SIZE)))) {
                            mstore(0x00, shl(224, WORK_TABLE_FULL))
                            mstore(0x04, mload(add(c, CTX_SIZE)))
                            revert(0x00, 0x24)
                        }
                        mstore(add(c, CTX_USED), used)
                        mstore(e, w)
                        leave
                    }
                    i := and(add(i, 1), m)
                }
            }
            // Loads the licensee's METERED lane for work `w` into the row's cache word.
            function loadLane(c, e, w, tag) -> lane {
                mstore(0x00, shr(2, w))
                mstore(0x20, mload(add(c, CTX_LICENSE_BASE)))
                lane := or(shl(64, tag), and(shr(shl(6, and(w, 3)), sload(keccak256(0x00, 0x40))), 0xffffffffffffffff))
                mstore(add(e, 0x20), lane)
            }
            // The loop proper, in its own frame; returns the charge and where it stopped.
            function run(c, p, last, t, m, tag) -> chg, at {
                let previous := 0
                for {} lt(p, last) { p := add(p, 6) } {
                    let v := calldataload(p)
                    let w := shr(224, v)
                    v := and(shr(208, v), 0xffff) // the count
                    if or(iszero(gt(w, previous)), iszero(v)) { break }
                    previous := w
                    let e := add(t, shl(6, and(w, m)))
                    if iszero(eq(and(mload(e), 0xffffffff), w)) { e := findRow(c, t, m, w) }
                    let lane := mload(add(e, 0x20))
                    if iszero(eq(shr(64, lane), tag)) { lane := loadLane(c, e, w, tag) }
                    // Licensed: a METERED license (expiry != 0) whose expiry is at or after toTime.
                    if iszero(or(iszero(and(lane, 0xffffffff)), lt(and(lane, 0xffffffff), mload(add(c, CTX_TO_TIME))))) {
                        lane := mul(v, and(shr(32, lane), 0xffffffff)) // the amount
                        chg := add(chg, lane)
                        mstore(e, add(mload(e), or(shl(32, v), shl(96, lane))))
                    }
                }
                at := p
            }
            let stoppedAt := 0
            charge, stoppedAt := run(
                ctx,
                entries,
                add(entries, mul(6, n)),
                mload(add(ctx, CTX_TABLE)),
                mload(add(ctx, CTX_MASK)),
                mload(add(ctx, CTX_TAG))
            )
            done := div(sub(stoppedAt, entries), 6)
        }
    }

    /// @dev Takes back what _applyEntries added for the first `n` entries (all well formed,
    ///      rows and lanes already in the table).
    function _undoEntries(uint256 ctx, uint256 entries, uint256 n) private view {
        uint256 toTime;
        assembly {
            toTime := mload(add(ctx, CTX_TO_TIME))
        }
        for (uint256 k; k < n; ++k) {
            assembly {
                let v := calldataload(add(entries, mul(6, k)))
                let w := shr(224, v)
                let c := and(shr(208, v), 0xffff)
                let table := mload(add(ctx, CTX_TABLE))
                let mask := mload(add(ctx, CTX_MASK))
                let i := and(w, mask)
                let e := add(table, shl(6, i))
                for {} iszero(eq(and(mload(e), 0xffffffff), w)) {} {
                    i := and(add(i, 1), mask)
                    e := add(table, shl(6, i))
                }
                let lane := and(mload(add(e, 0x20)), 0xffffffffffffffff)
                if iszero(or(iszero(and(lane, 0xffffffff)), lt(and(lane, 0xffffffff), toTime))) {
                    mstore(e, sub(mload(e), or(shl(32, c), shl(96, mul(c, shr(32, lane))))))
                }
            }
        }
    }

    /// @dev Appends deviceId u64 | nonce u32 | fromTime u32 | toTime u32 | charged u96 | n u16 | entries.
    function _appendRecord(uint256 ctx, uint64 deviceId, uint256 head, uint256 entries, uint256 n) private pure {
        assembly {
            let cursor := mload(add(ctx, CTX_CURSOR))
            let charge := mload(add(ctx, CTX_CHARGE))
            // nonce, fromTime, toTime sit in bits 128..223 of head, in record order.
            let word := or(shl(192, deviceId), or(shl(96, and(shr(128, head), 0xffffffffffffffffffffffff)), charge))
            mstore(cursor, word)
            mstore(add(cursor, 0x20), shl(240, n))
            calldatacopy(add(cursor, 34), entries, mul(6, n))
            mstore(add(ctx, CTX_CURSOR), add(cursor, add(34, mul(6, n))))
        }
    }

    /// @dev Writes each touched work's accrual and play count once.
    function _flushWorks(uint256 ctx) private {
        uint256 table;
        uint256 size;
        assembly {
            table := mload(add(ctx, CTX_TABLE))
            size := mload(add(ctx, CTX_SIZE))
        }
        for (uint256 i; i < size; ++i) {
            uint256 row;
            assembly {
                row := mload(add(table, shl(6, i)))
            }
            if (row >> 32 == 0) continue;
            uint256 workId = row & 0xffffffff;
            uint256 plays = (row >> 32) & type(uint64).max;
            uint256 amount = row >> 96;
            uint256 slot = _workSlots[workId];
            uint256 accrued = (slot & ACCRUED_MASK) + amount;
            uint256 played = ((slot >> PLAYS_SHIFT) & PLAYS_MASK) + plays;
            if (accrued > ACCRUED_MASK || played > PLAYS_MASK) revert WorkCounterOverflow(workId);
            _workSlots[workId] = (slot >> COMMITMENT_SHIFT << COMMITMENT_SHIFT) | (played << PLAYS_SHIFT) | accrued;
        }
    }

    /// @dev Emits PlaysRecorded with every applied batch (none: no event).
    function _emitRecords(uint256 ctx) private returns (uint256 applied) {
        bytes32 topic = PlaysRecorded.selector;
        assembly {
            applied := mload(add(ctx, CTX_APPLIED))
            let buffer := mload(add(ctx, CTX_BUFFER))
            let cursor := mload(add(ctx, CTX_CURSOR))
            let length := sub(cursor, add(buffer, 0x40))
            if applied {
                mstore(buffer, 0x20)
                mstore(add(buffer, 0x20), length)
                mstore(cursor, 0) // zero the padding of the last word
                log1(buffer, add(0x40, and(add(length, 31), not(31))), topic)
            }
            mstore(0x40, add(cursor, 0x20))
        }
    }
}
