// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
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
///        ctx   (CTX_BYTES)          the call's state and constants, see CTX_* offsets
///        table (64 << tableBits)    word 0: key | plays << 32 | amount << 96; word 1: license cache
///        event buffer               0x20 | length | records..., grows as batches are applied
///      The batch loop is one Yul block that allocates nothing: memory past the record being
///      written is its scratch (entries hash, struct hash, digest, ecrecover input). The EIP-712
///      domain separator comes from OpenZeppelin's EIP712; the digest and the low-s ecrecover
///      are computed inline to the same rules as OpenZeppelin's MessageHashUtils and ECDSA.
abstract contract PlayReporting is LedgerBase, EIP712, IPlayReporting {
    bytes32 private constant PLAY_BATCH_TYPEHASH =
        keccak256("PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)");
    uint256 private constant MAX_CLOCK_SKEW = 15 minutes;
    uint256 private constant MAX_ENTRIES = 1024;

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
    uint256 private constant CTX_DEVICES_SLOT = 0x1c0;
    uint256 private constant CTX_REVOKED_SLOT = 0x1e0;
    uint256 private constant CTX_METERED_SLOT = 0x200;
    uint256 private constant CTX_ESCROW_SLOT = 0x220;
    uint256 private constant CTX_TYPEHASH = 0x240;
    uint256 private constant CTX_DOMAIN = 0x260;
    uint256 private constant CTX_SKIP_TOPIC = 0x280;
    uint256 private constant CTX_TIME_LIMIT = 0x2a0;
    uint256 private constant CTX_BYTES = 0x2c0;
    /// @dev bytes4(keccak256("MalformedBatchData(uint256)")), checked by the tests.
    uint256 private constant MALFORMED_BATCH_DATA = 0x6f7ca216;
    /// @dev secp256k1n / 2: larger s values are malleable and rejected (as OpenZeppelin's ECDSA does).
    uint256 private constant MAX_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
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
        _run(ctx, p, end);
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

    /// @dev Lays out ctx (with the constants the Yul code needs), the zeroed work table and
    ///      the event buffer.
    function _newContext(uint256 bits, uint256 end) private view returns (uint256 ctx) {
        bytes32 domain = _domainSeparatorV4();
        bytes32 typeHash = PLAY_BATCH_TYPEHASH;
        bytes32 skipTopic = BatchSkipped.selector;
        uint256 timeLimit = block.timestamp + MAX_CLOCK_SKEW;
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
            mstore(add(ctx, CTX_DEVICES_SLOT), _devices.slot)
            mstore(add(ctx, CTX_REVOKED_SLOT), _revoked.slot)
            mstore(add(ctx, CTX_METERED_SLOT), _metered.slot)
            mstore(add(ctx, CTX_ESCROW_SLOT), _escrow.slot)
            mstore(add(ctx, CTX_TYPEHASH), typeHash)
            mstore(add(ctx, CTX_DOMAIN), domain)
            mstore(add(ctx, CTX_SKIP_TOPIC), skipTopic)
            mstore(add(ctx, CTX_TIME_LIMIT), timeLimit)
            mstore(0x40, add(buffer, 0x40))
        }
    }

    /// @dev The whole batch loop, in Yul: groups, batches, checks, signature, entries, records.
    ///      Memory beyond the record being written is scratch; nothing here allocates.
    function _run(uint256 ctx, uint256 start, uint256 end) private {
        assembly {
            function fail(selector, arg) {
                mstore(0x00, shl(224, selector))
                mstore(0x04, arg)
                revert(0x00, 0x24)
            }

            // Finds the row of work `w` (linear probing from its home row), inserting it when
            // absent. Row word 0: key (bits 0..31) | plays (32..95) | amount (96..255).
            function findRow(c, t, m, w) -> e {
                let i := and(w, m)
                for {} 1 {} {
                    e := add(t, shl(6, i))
                    let key := and(mload(e), 0xffffffff)
                    if eq(key, w) { leave }
                    if iszero(key) {
                        let used := add(mload(add(c, CTX_USED)), 1)
                        if iszero(lt(used, mload(add(c, CTX_SIZE)))) { fail(WORK_TABLE_FULL, mload(add(c, CTX_SIZE))) }
                        mstore(add(c, CTX_USED), used)
                        mstore(e, w)
                        leave
                    }
                    i := and(add(i, 1), m)
                }
            }

            // The slow path of an entry: the row is not at its home slot, or its license cache
            // is from another group. Row word 1 caches, for the current group:
            // key (bits 224..255) | tag (192..223) | expiry (160..191) | multiplier (0..159),
            // where multiplier = rate << 96 | 1 << 32, so count * multiplier adds the plays and
            // the amount to word 0 in one step.
            function slowRow(c, t, m, w, tag) -> e, cache {
                e := findRow(c, t, m, w)
                mstore(0x00, shr(2, w))
                mstore(0x20, mload(add(c, CTX_LICENSE_BASE)))
                let lane := shr(shl(6, and(w, 3)), sload(keccak256(0x00, 0x40)))
                cache := or(
                    or(shl(224, w), shl(192, tag)),
                    or(shl(160, and(lane, 0xffffffff)), or(shl(96, and(shr(32, lane), 0xffffffff)), 0x100000000))
                )
                mstore(add(e, 0x20), cache)
            }

            // Adds the licensed plays of the entries in [p, last) to the table. Returns the
            // sum of count * multiplier (the charge is its bits 96..255) and where it stopped
            // (before `last` when an entry is malformed).
            function applyEntries(c, p, last, t, m, tag, toTime) -> chg, at {
                let previous := 0
                let v := 0
                let w := 0
                let e := 0
                let cache := 0
                for {} lt(p, last) { p := add(p, 6) } {
                    v := calldataload(p)
                    w := shr(224, v)
                    v := and(shr(208, v), 0xffff) // the count
                    if iszero(mul(gt(w, previous), v)) { break }
                    previous := w
                    e := add(t, shl(6, and(w, m)))
                    cache := mload(add(e, 0x20))
                    if iszero(eq(shr(192, cache), or(shl(32, w), tag))) { e, cache := slowRow(c, t, m, w, tag) }
                    // Licensed: expiry >= toTime (toTime >= 1, so no license never passes).
                    if iszero(lt(and(shr(160, cache), 0xffffffff), toTime)) {
                        v := mul(v, and(cache, 0xffffffffffffffffffffffffffffffffffffffff))
                        chg := add(chg, v)
                        mstore(e, add(mload(e), v))
                    }
                }
                at := p
            }

            // Takes back what applyEntries added for the well-formed entries in [p, last).
            function undoEntries(c, p, last, t, m, toTime) {
                for {} lt(p, last) { p := add(p, 6) } {
                    let v := calldataload(p)
                    let e := findRow(c, t, m, shr(224, v))
                    let cache := mload(add(e, 0x20))
                    if iszero(lt(and(shr(160, cache), 0xffffffff), toTime)) {
                        mstore(e, sub(mload(e), mul(and(shr(208, v), 0xffff), and(cache, 0xffffffffffffffffffffffffffffffffffffffff))))
                    }
                }
            }

            // Device, time and nonce checks: 255 and the device's next slot value when the batch
            // may proceed, else a SkipReason.
            function checkHeader(c, head, n, state, id) -> reason, next {
                reason := 255
                if iszero(and(state, 0xffffffffffffffffffffffffffffffffffffffff)) {
                    mstore(0x00, id)
                    mstore(0x20, mload(add(c, CTX_REVOKED_SLOT)))
                    reason := iszero(sload(keccak256(0x00, 0x40))) // 1 DeviceRevoked, 0 UnknownDevice
                    reason := sub(1, reason)
                    leave
                }
                let toTime := and(shr(128, head), 0xffffffff)
                if or(or(iszero(toTime), gt(and(shr(160, head), 0xffffffff), toTime)), gt(toTime, mload(add(c, CTX_TIME_LIMIT)))) {
                    reason := 2 // BadTimeRange
                    leave
                }
                if or(iszero(n), gt(n, MAX_ENTRIES)) {
                    reason := 5 // MalformedEntries
                    leave
                }
                let nonce := and(shr(192, head), 0xffffffff)
                let top := and(shr(160, state), 0xffffffff)
                let window := shr(192, state)
                switch gt(nonce, top)
                case 1 {
                    let shift := sub(nonce, top)
                    window := or(and(shl(shift, window), 0xffffffffffffffff), 1)
                    top := nonce
                }
                default {
                    let distance := sub(top, nonce)
                    if or(gt(distance, 63), and(shr(distance, window), 1)) {
                        reason := 3 // NonceUsed
                        leave
                    }
                    window := or(window, shl(distance, 1))
                }
                next := or(and(state, 0xffffffffffffffffffffffffffffffffffffffff), or(shl(160, top), shl(192, window)))
            }

            // Whether the batch at p (entries already copied to `copy`) is signed by `device`
            // (EIP-712 digest, EIP-2098 compact signature, low s only). Uses memory after the
            // copy as scratch.
            function signedBy(c, p, head, n, device, copy) -> ok {
                let len := mul(6, n)
                let m := add(copy, len)
                mstore(m, mload(add(c, CTX_TYPEHASH)))
                mstore(add(m, 0x20), device)
                mstore(add(m, 0x40), and(shr(192, head), 0xffffffff))
                mstore(add(m, 0x60), and(shr(160, head), 0xffffffff))
                mstore(add(m, 0x80), and(shr(128, head), 0xffffffff))
                mstore(add(m, 0xa0), keccak256(copy, len))
                let structHash := keccak256(m, 0xc0)
                mstore(m, 0x1901)
                mstore(add(m, 0x20), mload(add(c, CTX_DOMAIN)))
                mstore(add(m, 0x40), structHash)
                let digest := keccak256(add(m, 0x1e), 0x42)
                let vs := calldataload(add(p, add(50, len)))
                let s := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                if gt(s, MAX_S) { leave }
                mstore(m, digest)
                mstore(add(m, 0x20), add(shr(255, vs), 27))
                mstore(add(m, 0x40), calldataload(add(p, add(18, len))))
                mstore(add(m, 0x60), s)
                mstore(0x00, 0)
                pop(staticcall(gas(), 1, m, 0x80, 0x00, 0x20))
                ok := and(eq(returndatasize(), 0x20), eq(mload(0x00), device))
            }

            function skip(c, id, nonce, reason) {
                mstore(0x00, nonce)
                mstore(0x20, reason)
                log2(0x00, 0x40, mload(add(c, CTX_SKIP_TOPIC)), id)
            }

            // One batch: checks, signature, charge, record. Returns where the next one starts.
            function processBatch(c, p) -> next {
                let head := calldataload(p)
                let n := and(shr(112, head), 0xffff)
                next := add(p, add(82, mul(6, n)))
                if gt(next, mload(add(c, CTX_END))) { fail(MALFORMED_BATCH_DATA, p) }
                let id := or(shl(32, mload(add(c, CTX_LICENSEE))), shr(224, head))
                mstore(0x00, id)
                mstore(0x20, mload(add(c, CTX_DEVICES_SLOT)))
                let slot := keccak256(0x00, 0x40)
                let state := sload(slot)
                let reason, newState := checkHeader(c, head, n, state, id)
                if eq(reason, 255) {
                    reason := charge(c, p, head, n, and(state, 0xffffffffffffffffffffffffffffffffffffffff))
                }
                if iszero(eq(reason, 255)) {
                    skip(c, id, and(shr(192, head), 0xffffffff), reason)
                    leave
                }
                sstore(slot, newState)
                // The record: id | nonce | fromTime | toTime | charged, then n, then the entries
                // (copied already by charge).
                let cursor := mload(add(c, CTX_CURSOR))
                mstore(cursor, or(shl(192, id), or(shl(96, and(shr(128, head), 0xffffffffffffffffffffffff)), mload(add(c, CTX_CHARGE)))))
                mstore(add(cursor, 0x20), or(shl(240, n), and(mload(add(cursor, 0x20)), 0x0000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)))
                mstore(add(c, CTX_CURSOR), add(cursor, add(34, mul(6, n))))
                mstore(add(c, CTX_APPLIED), add(mload(add(c, CTX_APPLIED)), 1))
            }

            // Signature, then the entries against the escrow. 255 when applied.
            function charge(c, p, head, n, device) -> reason {
                let entries := add(p, 18)
                let last := add(entries, mul(6, n))
                let copy := add(mload(add(c, CTX_CURSOR)), 34)
                calldatacopy(copy, entries, mul(6, n))
                if iszero(signedBy(c, p, head, n, device, copy)) {
                    reason := 4 // BadSignature
                    leave
                }
                let toTime := and(shr(128, head), 0xffffffff)
                let t := mload(add(c, CTX_TABLE))
                let m := mload(add(c, CTX_MASK))
                let chg, at := applyEntries(c, entries, last, t, m, mload(add(c, CTX_TAG)), toTime)
                if lt(at, last) {
                    undoEntries(c, entries, at, t, m, toTime)
                    reason := 5 // MalformedEntries
                    leave
                }
                chg := shr(96, chg)
                let escrow := mload(add(c, CTX_ESCROW))
                if gt(chg, escrow) {
                    undoEntries(c, entries, last, t, m, toTime)
                    reason := 6 // InsufficientEscrow
                    leave
                }
                mstore(add(c, CTX_ESCROW), sub(escrow, chg))
                mstore(add(c, CTX_CHARGE), chg)
                reason := 255
            }

            // One licensee's batches: escrow read once, written once.
            function processGroup(c, p) -> next {
                if gt(add(p, 6), mload(add(c, CTX_END))) { fail(MALFORMED_BATCH_DATA, p) }
                let head := calldataload(p)
                let licensee := shr(224, head)
                let count := and(shr(208, head), 0xffff)
                if iszero(count) { fail(MALFORMED_BATCH_DATA, p) }
                next := add(p, 6)
                mstore(0x00, licensee)
                mstore(0x20, mload(add(c, CTX_ESCROW_SLOT)))
                let escrowSlot := keccak256(0x00, 0x40)
                let escrow := sload(escrowSlot)
                mstore(0x20, mload(add(c, CTX_METERED_SLOT)))
                mstore(add(c, CTX_LICENSE_BASE), keccak256(0x00, 0x40))
                mstore(add(c, CTX_LICENSEE), licensee)
                mstore(add(c, CTX_TAG), add(mload(add(c, CTX_TAG)), 1))
                mstore(add(c, CTX_ESCROW), escrow)
                for {} count { count := sub(count, 1) } { next := processBatch(c, next) }
                let left := mload(add(c, CTX_ESCROW))
                if iszero(eq(left, escrow)) { sstore(escrowSlot, left) }
            }

            for { let p := start } lt(p, end) {} { p := processGroup(ctx, p) }
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
