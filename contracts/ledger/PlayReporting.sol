// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IPlayReporting} from "../interfaces/IPlayReporting.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title PlayReporting
/// @notice The play-batch path: many device-signed batches per call, each verified, charged
///         from its licensee's escrow and counted, or skipped whole with a reason.
/// @dev Built for gas (see docs/gas.md). Per call, an in-memory open-addressing table keyed by
///      work id accumulates each work's totals (loaded from storage when the work is first
///      met, written once at the end) and caches each work's license lane per licensee group;
///      escrow is read and written once per group; a device's slot is read once per batch and,
///      for a nonce of its current 64-nonce chunk (the common case), written once: no other
///      slot (see useNonceAndCharge); one event carries every applied batch.
///      Memory layout of the call:
///        ctx   (CTX_BYTES)          the call's state and constants, see CTX_* offsets
///        table (ROW_BYTES << tableBits)  rows, see ROW_* offsets
///        event buffer               0x20 | length | records..., grows as batches are applied
///      The batch loop is one Yul block that allocates nothing: memory past the record being
///      written is its scratch (entries hash, struct hash, digest, ecrecover input). The EIP-712
///      domain separator comes from OpenZeppelin's EIP712; the digest and the low-s ecrecover
///      are computed inline to the same rules as OpenZeppelin's MessageHashUtils and ECDSA.
///      contracts/test/PlayReportingReference.sol states the same rules in plain Solidity.
abstract contract PlayReporting is LedgerBase, EIP712, IPlayReporting {
    bytes32 private constant PLAY_BATCH_TYPEHASH =
        keccak256("PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)");
    uint256 private constant MAX_CLOCK_SKEW = 15 minutes;
    uint256 private constant MAX_ENTRIES = 1024;
    uint256 private constant MIN_TABLE_BITS = 4;
    /// @dev 2**15 rows of 128 bytes (4 MiB of memory) would cost more gas than a transaction may use.
    uint256 private constant MAX_TABLE_BITS = 14;

    // ---- calldata layout (all integers big-endian) ----
    /// @dev Group header: licenseeIndex u32 | batchCount u16.
    uint256 private constant GROUP_HEADER_BYTES = 6;
    /// @dev Batch header: deviceNumber u32 | nonce u32 | fromTime u32 | toTime u32 | n u16.
    uint256 private constant BATCH_HEADER_BYTES = 18;
    /// @dev Batch header + entries + signature = BATCH_FIXED_BYTES + 6n.
    uint256 private constant BATCH_FIXED_BYTES = 82;
    /// @dev Entry: workId u32 | count u16.
    uint256 private constant ENTRY_BYTES = 6;
    /// @dev Offsets of r and yParityAndS past the entries.
    uint256 private constant SIG_R_OFFSET = 18;
    uint256 private constant SIG_VS_OFFSET = 50;
    /// @dev Field shifts in the 32-byte word read at the start of a group / batch / entry.
    uint256 private constant GROUP_LICENSEE_SHIFT = 224;
    uint256 private constant GROUP_COUNT_SHIFT = 208;
    uint256 private constant HEAD_DEVICE_SHIFT = 224;
    uint256 private constant HEAD_NONCE_SHIFT = 192;
    uint256 private constant HEAD_FROM_SHIFT = 160;
    uint256 private constant HEAD_TO_SHIFT = 128;
    uint256 private constant HEAD_N_SHIFT = 112;
    /// @dev nonce | fromTime | toTime: the 96 bits of the header copied into a record.
    uint256 private constant HEAD_TIMES_MASK = 0xffffffffffffffffffffffff;
    uint256 private constant ENTRY_WORK_SHIFT = 224;
    uint256 private constant ENTRY_COUNT_SHIFT = 208;
    uint256 private constant U16 = 0xffff;
    uint256 private constant U32 = 0xffffffff;
    /// @dev Device id = licenseeIndex << 32 | deviceNumber.
    uint256 private constant DEVICE_NUMBER_BITS = 32;

    // ---- nonce bitmap (Permit2-style): bit (nonce & 255) of word (nonce >> 8) ----
    uint256 private constant NONCE_BIT_MASK = 0xff;
    uint256 private constant NONCE_WORD_SHIFT = 8;
    /// @dev DEVICE_SETTLED of a device slot (see LedgerBase), 1 << 255.
    uint256 private constant SETTLED_FLAG = 0x8000000000000000000000000000000000000000000000000000000000000000;
    /// @dev CHUNK_BITS_MASK, the 64 used bits of a live slot's chunk.
    uint256 private constant U64 = 0xffffffffffffffff;
    /// @dev Bits 224..255 of a device slot: the live chunk's index, or SETTLED_FLAG >> 224
    ///      (2**31, above every chunk index, 2**26 - 1 at most) when settled, so one
    ///      comparison sends a settled slot's batches the way of an older chunk: to the archive.
    uint256 private constant SLOT_CHUNK_SHIFT = 224;

    // ---- EIP-2098 compact signature and ecrecover ----
    /// @dev The low 255 bits of yParityAndS are s; the top bit is the y parity.
    uint256 private constant S_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    uint256 private constant PARITY_SHIFT = 255;
    /// @dev v = 27 + y parity.
    uint256 private constant V_BASE = 27;
    /// @dev secp256k1n / 2: larger s values are malleable and rejected (as OpenZeppelin's ECDSA does).
    uint256 private constant MAX_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @dev The ecrecover precompile.
    uint256 private constant ECRECOVER = 1;
    /// @dev "\x19\x01" ahead of the domain separator and struct hash (EIP-712); stored at the
    ///      end of a word, so the digest input starts 30 bytes in and is 66 bytes long.
    uint256 private constant EIP712_PREFIX = 0x1901;
    uint256 private constant EIP712_PREFIX_OFFSET = 0x1e;
    uint256 private constant EIP712_INPUT_BYTES = 0x42;

    // ---- the table of works: 128-byte rows ----
    /// @dev log2 of the row size.
    uint256 private constant ROW_SHIFT = 7;
    /// @dev Word 0: work id (bits 0..31) | plays (32..95) | accrued (96..255): the work's
    ///      totals, stored values included, so a counter overflow is seen per batch.
    uint256 private constant ROW_PLAYS_SHIFT = 32;
    uint256 private constant ROW_AMOUNT_SHIFT = 96;
    /// @dev Word 1, license cache of the current group: key (193..255) = tag << 32 | work id,
    ///      the tag even and its low bit (cache bit 225) hasPrevious; bit 192 always 0 (a guard,
    ///      see KEY_TIME_SHIFT); expiry (160..191); multiplier (0..159) = rate << 96 | 1 << 32,
    ///      so count * multiplier adds plays and amount to word 0 in one step.
    uint256 private constant ROW_CACHE = 0x20;
    /// @dev Word 2: the previous rate period, laid out like word 1 without a key:
    ///      prevExpiry (160..191) | its multiplier (0..159). Written and read only when the
    ///      cache has hasPrevious.
    uint256 private constant ROW_PREV = 0x40;
    /// @dev Word 3: the work's storage slot as read when the row was made.
    uint256 private constant ROW_STORED = 0x60;
    uint256 private constant CACHE_KEY_SHIFT = 193;
    uint256 private constant CACHE_EXPIRY_SHIFT = 160;
    /// @dev hasPrevious in a cache key (bit 32: the low bit of the tag, which tags never set).
    uint256 private constant KEY_HAS_PREVIOUS = 0x100000000;
    /// @dev hasPrevious in a cache word: KEY_HAS_PREVIOUS << CACHE_KEY_SHIFT.
    uint256 private constant CACHE_HAS_PREVIOUS = 0x200000000000000000000000000000000000000000000000000000000;
    /// @dev The entry loop's one test: with kt = tag << 65 | toTime (KEY_TIME_SHIFT = 33 puts the
    ///      key above the guard bit and the expiry), x = (cache >> 160) - (kt + (w << 33)) is
    ///      below TIME_RANGE exactly when the key is this group's key of work w without
    ///      hasPrevious and expiry >= toTime: equal keys leave expiry - toTime (wrapping to a
    ///      huge number when negative), and unequal keys differ by at least 2**33, more than any
    ///      difference of two 32-bit times.
    uint256 private constant KEY_TIME_SHIFT = 33;
    uint256 private constant TIME_RANGE = 0x100000000;
    /// @dev Bits 160..191 of a cache word: the expiry.
    uint256 private constant CACHE_EXPIRY_MASK = 0xffffffff0000000000000000000000000000000000000000;
    /// @dev Bits 0..159 of a cache word: the multiplier.
    uint256 private constant MULTIPLIER_MASK = 0x00ffffffffffffffffffffffffffffffffffffffff;
    uint256 private constant RATE_SHIFT = 96;
    uint256 private constant ONE_PLAY = 0x100000000;
    /// @dev Row bits that are set once plays exceed PLAYS_MASK (row bits 72..95) or the
    ///      accrual exceeds ACCRUED_MASK (row bits 152..255). Rows never hold such bits between
    ///      batches (a batch that sets one is undone), so the OR of the rows a batch wrote
    ///      shows whether it overflowed a counter.
    uint256 private constant OVERFLOW_BITS =
        0xffffffffffffffffffffffffff00000000000000ffffff000000000000000000;
    /// @dev License lanes (see LedgerBase): 64 bits, lane (workId & 3) of word (workId >> 2):
    ///      expiry (bits 0..31) | rate (32..62) | hasPrevious (63); previous-period lanes
    ///      (same position in the `_meteredPrevious` word): prevExpiry (0..31) | prevRate (32..63).
    uint256 private constant LANE_WORD_SHIFT = 2;
    uint256 private constant LANE_INDEX_MASK = 3;
    /// @dev log2 of LANE_BITS: lane (workId & 3) of a word starts at bit (workId & 3) << 6.
    uint256 private constant LANE_BITS_LOG2 = 6;
    /// @dev MAX_RATE, (1 << 31) - 1.
    uint256 private constant LANE_RATE_MASK = 0x7fffffff;
    /// @dev HAS_PREVIOUS, 1 << 63.
    uint256 private constant LANE_HAS_PREVIOUS = 0x8000000000000000;
    /// @dev Each licensee group of a call gets its own tag, kept shifted (tag << 32, see
    ///      ROW_CACHE): the next group's is the previous one + TAG_STEP (tags 2, 4, 6, ...).
    uint256 private constant TAG_STEP = 0x200000000;

    // ---- a record of PlaysRecorded: id u64 | nonce u32 | from u32 | to u32 | charged u96 | n u16 | entries ----
    uint256 private constant RECORD_HEADER_BYTES = 34;
    uint256 private constant RECORD_ID_SHIFT = 192;
    uint256 private constant RECORD_TIMES_SHIFT = 96;
    uint256 private constant RECORD_N_SHIFT = 240;
    /// @dev The bytes of the record's second word after n (the entries copied there).
    uint256 private constant RECORD_AFTER_N_MASK = 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;

    // ---- literal copies of LedgerBase's masks (inline assembly takes literals only) ----
    /// @dev (1 << 160) - 1: the device key in a device slot.
    uint256 private constant DEVICE_ADDRESS_MASK = 0x00ffffffffffffffffffffffffffffffffffffffff;
    /// @dev ACCRUED_MASK, (1 << 56) - 1.
    uint256 private constant ACCRUED_LIMIT = 0xffffffffffffff;
    /// @dev PLAYS_MASK, (1 << 40) - 1.
    uint256 private constant PLAYS_LIMIT = 0xffffffffff;

    // ---- outcome of a batch: APPLIED or a SkipReason (values of the SkipReason enum) ----
    uint256 private constant APPLIED = 255;
    uint256 private constant SKIP_DEVICE_REVOKED = 1;
    uint256 private constant SKIP_BAD_TIME_RANGE = 2;
    uint256 private constant SKIP_NONCE_USED = 3;
    uint256 private constant SKIP_MALFORMED_ENTRIES = 5;
    uint256 private constant SKIP_INSUFFICIENT_ESCROW = 6;
    uint256 private constant SKIP_COUNTER_OVERFLOW = 7;

    // ---- ctx: the call's state ----
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
    uint256 private constant CTX_DEVICES_SLOT = 0x1a0;
    uint256 private constant CTX_BITMAP_SLOT = 0x1c0;
    uint256 private constant CTX_METERED_SLOT = 0x1e0;
    uint256 private constant CTX_ESCROW_SLOT = 0x200;
    uint256 private constant CTX_TYPEHASH = 0x220;
    uint256 private constant CTX_DOMAIN = 0x240;
    uint256 private constant CTX_SKIP_TOPIC = 0x260;
    uint256 private constant CTX_TIME_LIMIT = 0x280;
    uint256 private constant CTX_WORKS_SLOT = 0x2a0;
    uint256 private constant CTX_PREVIOUS_SLOT = 0x2c0;
    uint256 private constant CTX_PREVIOUS_BASE = 0x2e0;
    uint256 private constant CTX_BYTES = 0x300;
    /// @dev bytes4(keccak256("MalformedBatchData(uint256)")), checked by the tests.
    uint256 private constant MALFORMED_BATCH_DATA = 0x6f7ca216;
    /// @dev bytes4(keccak256("WorkTableFull(uint256)")), checked by the tests.
    uint256 private constant WORK_TABLE_FULL = 0x8e1f3ac5;

    /// @dev The literal copies above must equal LedgerBase's masks: a mismatch makes every
    ///      deployment fail (the check folds to nothing otherwise).
    constructor() {
        if (
            DEVICE_ADDRESS_MASK != ADDRESS_MASK || ACCRUED_LIMIT != ACCRUED_MASK || PLAYS_LIMIT != PLAYS_MASK
                || LANE_RATE_MASK != MAX_RATE || LANE_HAS_PREVIOUS != HAS_PREVIOUS || 1 << LANE_BITS_LOG2 != LANE_BITS
                || CACHE_HAS_PREVIOUS != KEY_HAS_PREVIOUS << CACHE_KEY_SHIFT || TAG_STEP != KEY_HAS_PREVIOUS << 1
                || MULTIPLIER_MASK != (1 << CACHE_EXPIRY_SHIFT) - 1 || CACHE_EXPIRY_MASK != U32 << CACHE_EXPIRY_SHIFT
                || KEY_TIME_SHIFT != CACHE_KEY_SHIFT - CACHE_EXPIRY_SHIFT || TIME_RANGE != U32 + 1 || ONE_PLAY != 1 << 32
                || SETTLED_FLAG != DEVICE_SETTLED || U64 != CHUNK_BITS_MASK || SLOT_CHUNK_SHIFT != CHUNK_INDEX_SHIFT
                || CHUNK_INDEX_MASK >= SETTLED_FLAG >> SLOT_CHUNK_SHIFT || NONCE_WORD_SHIFT != CHUNK_NONCE_SHIFT + CHUNKS_PER_WORD_SHIFT
                || NONCE_BIT_MASK != (CHUNK_IN_WORD_MASK << CHUNK_NONCE_SHIFT) | CHUNK_NONCE_MASK
        ) {
            revert();
        }
    }

    /// @inheritdoc IPlayReporting
    /// @dev Virtual only so the test-only reference (contracts/test/PlayReportingReference.sol)
    ///      can state the same rules in plain Solidity.
    function submitBatches(bytes calldata data) external virtual returns (uint256 applied) {
        if (data.length == 0) revert MalformedBatchData(0);
        uint256 bits = uint8(data[0]);
        if (bits < MIN_TABLE_BITS || bits > MAX_TABLE_BITS) revert BadTableBits(bits);
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
            let tableBytes := shl(ROW_SHIFT, size)
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
            mstore(add(ctx, CTX_BITMAP_SLOT), _nonceBitmaps.slot)
            mstore(add(ctx, CTX_METERED_SLOT), _metered.slot)
            mstore(add(ctx, CTX_PREVIOUS_SLOT), _meteredPrevious.slot)
            mstore(add(ctx, CTX_ESCROW_SLOT), _escrow.slot)
            mstore(add(ctx, CTX_WORKS_SLOT), _workSlots.slot)
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
            // absent with the work's stored totals (and its storage word, for the final write).
            function findRow(c, t, m, w) -> e {
                let i := and(w, m)
                for {} 1 {} {
                    e := add(t, shl(ROW_SHIFT, i))
                    let key := and(mload(e), U32)
                    if eq(key, w) { leave }
                    if iszero(key) {
                        let used := add(mload(add(c, CTX_USED)), 1)
                        if iszero(lt(used, mload(add(c, CTX_SIZE)))) { fail(WORK_TABLE_FULL, mload(add(c, CTX_SIZE))) }
                        mstore(add(c, CTX_USED), used)
                        mstore(0x00, w)
                        mstore(0x20, mload(add(c, CTX_WORKS_SLOT)))
                        let stored := sload(keccak256(0x00, 0x40))
                        mstore(add(e, ROW_STORED), stored)
                        mstore(e, or(w, or(
                            shl(ROW_PLAYS_SHIFT, and(shr(PLAYS_SHIFT, stored), PLAYS_LIMIT)),
                            shl(ROW_AMOUNT_SHIFT, and(stored, ACCRUED_LIMIT))
                        )))
                        leave
                    }
                    i := and(add(i, 1), m)
                }
            }

            // Reads the license lane (four per word) of work w for the current group into the
            // row's cache word and, for a lane flagged hasPrevious, the previous period's lane
            // into word ROW_PREV. Returns the new cache word.
            function loadLicense(c, e, w, tagHi) -> cache {
                mstore(0x00, shr(LANE_WORD_SHIFT, w))
                mstore(0x20, mload(add(c, CTX_LICENSE_BASE)))
                let shift := shl(LANE_BITS_LOG2, and(w, LANE_INDEX_MASK))
                let lane := shr(shift, sload(keccak256(0x00, 0x40)))
                cache := or(
                    or(shl(CACHE_KEY_SHIFT, or(tagHi, w)), shl(CACHE_EXPIRY_SHIFT, and(lane, U32))),
                    or(shl(RATE_SHIFT, and(shr(LANE_RATE_SHIFT, lane), LANE_RATE_MASK)), ONE_PLAY)
                )
                if and(lane, LANE_HAS_PREVIOUS) {
                    cache := or(cache, CACHE_HAS_PREVIOUS)
                    mstore(0x20, mload(add(c, CTX_PREVIOUS_BASE)))
                    lane := shr(shift, sload(keccak256(0x00, 0x40)))
                    mstore(add(e, ROW_PREV), or(
                        shl(CACHE_EXPIRY_SHIFT, and(lane, U32)),
                        or(shl(RATE_SHIFT, and(shr(LANE_RATE_SHIFT, lane), U32)), ONE_PLAY)
                    ))
                }
                mstore(add(e, ROW_CACHE), cache)
            }

            // The slow path of an entry (its home row holds another work, or a cache of another
            // group, or a license with a previous period, or one that expired before toTime):
            // the row of w, and a word whose expiry (bits 160..191) and multiplier (bits 0..159)
            // are those of the period that charges plays ending at toTime (kt & U32): the
            // previous one when toTime <= prevExpiry, else the current one (unlicensed when
            // its expiry < toTime).
            function slowEntry(t, m, w, kt) -> e, cache {
                let c := sub(t, CTX_BYTES) // the table follows ctx
                e := findRow(c, t, m, w)
                cache := mload(add(e, ROW_CACHE))
                let tagHi := shr(KEY_TIME_SHIFT, kt)
                // The cache is this group's (with or without hasPrevious), else it is loaded.
                if iszero(eq(or(shr(CACHE_KEY_SHIFT, cache), KEY_HAS_PREVIOUS), or(or(tagHi, w), KEY_HAS_PREVIOUS))) {
                    cache := loadLicense(c, e, w, tagHi)
                }
                if and(cache, CACHE_HAS_PREVIOUS) {
                    let previous := mload(add(e, ROW_PREV))
                    if iszero(gt(and(kt, U32), shr(CACHE_EXPIRY_SHIFT, previous))) { cache := previous }
                }
            }

            // Adds the licensed plays of the entries in [p, last) to the table. Returns the
            // sum of count * multiplier (the charge is its bits 96..255), the OR of the rows it
            // wrote (a counter overflowed when it has OVERFLOW_BITS) and where it stopped
            // (before `last` when an entry is malformed). kt = tag << 65 | toTime (see
            // KEY_TIME_SHIFT). The common case (the work's home row, cached for this group, one
            // rate period, licensed) takes one comparison, no call and no storage read.
            function applyEntries(p, last, t, m, kt) -> chg, ovf, at {
                let previous := 0
                for {} lt(p, last) { p := add(p, ENTRY_BYTES) } {
                    let w := shr(ENTRY_WORK_SHIFT, calldataload(p))
                    let count := and(shr(ENTRY_COUNT_SHIFT, calldataload(p)), U16)
                    if iszero(mul(gt(w, previous), count)) { break }
                    previous := w
                    let e := add(t, shl(ROW_SHIFT, and(w, m)))
                    let cache := mload(add(e, ROW_CACHE))
                    if iszero(lt(sub(shr(CACHE_EXPIRY_SHIFT, cache), add(kt, shl(KEY_TIME_SHIFT, w))), TIME_RANGE)) {
                        e, cache := slowEntry(t, m, w, kt)
                        // Licensed: expiry >= toTime (toTime >= 1, so no license never passes).
                        if lt(shr(CACHE_EXPIRY_SHIFT, and(cache, CACHE_EXPIRY_MASK)), and(kt, U32)) { continue }
                    }
                    let amount := mul(count, and(cache, MULTIPLIER_MASK))
                    chg := add(chg, amount)
                    let row := add(mload(e), amount)
                    mstore(e, row)
                    ovf := or(ovf, row)
                }
                at := p
            }

            // Takes back what applyEntries added for the well-formed entries in [p, last)
            // (their rows hold this group's cache already: no storage read).
            function undoEntries(p, last, t, m, kt) {
                for {} lt(p, last) { p := add(p, ENTRY_BYTES) } {
                    let e, cache := slowEntry(t, m, shr(ENTRY_WORK_SHIFT, calldataload(p)), kt)
                    if iszero(lt(shr(CACHE_EXPIRY_SHIFT, and(cache, CACHE_EXPIRY_MASK)), and(kt, U32))) {
                        let count := and(shr(ENTRY_COUNT_SHIFT, calldataload(p)), U16)
                        mstore(e, sub(mload(e), mul(count, and(cache, MULTIPLIER_MASK))))
                    }
                }
            }

            // Time, registration and size checks of a batch signed by its device: APPLIED when
            // it may proceed, else a SkipReason.
            function checkHeader(c, head, n, state) -> reason {
                reason := APPLIED
                let toTime := and(shr(HEAD_TO_SHIFT, head), U32)
                if or(or(iszero(toTime), gt(and(shr(HEAD_FROM_SHIFT, head), U32), toTime)), gt(toTime, mload(add(c, CTX_TIME_LIMIT)))) {
                    reason := SKIP_BAD_TIME_RANGE
                    leave
                }
                // Outside this registration: after its revocation, or not after the key's
                // previous revocation (those plays belong to the earlier registration).
                // A live slot has neither (revokedAt and notBefore 0; toTime >= 1).
                if and(state, SETTLED_FLAG) {
                    let revokedAt := and(shr(REVOKED_AT_SHIFT, state), U32)
                    if or(and(iszero(iszero(revokedAt)), gt(toTime, revokedAt)), iszero(gt(toTime, and(shr(NOT_BEFORE_SHIFT, state), U32)))) {
                        reason := SKIP_DEVICE_REVOKED
                        leave
                    }
                }
                if or(iszero(n), gt(n, MAX_ENTRIES)) {
                    reason := SKIP_MALFORMED_ENTRIES
                    leave
                }
            }

            // Whether the batch at p (entries already copied to `copy`) is signed by `device`
            // (EIP-712 digest, EIP-2098 compact signature, low s only). Uses memory after the
            // copy as scratch.
            function signedBy(c, p, head, n, device, copy) -> ok {
                let len := mul(ENTRY_BYTES, n)
                let m := add(copy, len)
                mstore(m, mload(add(c, CTX_TYPEHASH)))
                mstore(add(m, 0x20), device)
                mstore(add(m, 0x40), and(shr(HEAD_NONCE_SHIFT, head), U32))
                mstore(add(m, 0x60), and(shr(HEAD_FROM_SHIFT, head), U32))
                mstore(add(m, 0x80), and(shr(HEAD_TO_SHIFT, head), U32))
                mstore(add(m, 0xa0), keccak256(copy, len))
                let structHash := keccak256(m, 0xc0)
                mstore(m, EIP712_PREFIX)
                mstore(add(m, 0x20), mload(add(c, CTX_DOMAIN)))
                mstore(add(m, 0x40), structHash)
                let digest := keccak256(add(m, EIP712_PREFIX_OFFSET), EIP712_INPUT_BYTES)
                let vs := calldataload(add(p, add(SIG_VS_OFFSET, len)))
                let s := and(vs, S_MASK)
                if gt(s, MAX_S) { leave }
                mstore(m, digest)
                mstore(add(m, 0x20), add(shr(PARITY_SHIFT, vs), V_BASE))
                mstore(add(m, 0x40), calldataload(add(p, add(SIG_R_OFFSET, len))))
                mstore(add(m, 0x60), s)
                mstore(0x00, 0)
                pop(staticcall(gas(), ECRECOVER, m, 0x80, 0x00, 0x20))
                ok := and(eq(returndatasize(), 0x20), eq(mload(0x00), device))
            }

            function skip(c, id, nonce, reason) {
                mstore(0x00, nonce)
                mstore(0x20, reason)
                log2(0x00, 0x40, mload(add(c, CTX_SKIP_TOPIC)), id)
            }

            // The nonce (unused, else NonceUsed), then the charge; marks the nonce used when
            // the batch is applied. `state` is the device slot (at `deviceSlot`). A live slot's
            // chunk (see LedgerBase) answers for its own nonces; a nonce of a later chunk is
            // unused (the archive holds no bits of the live chunk or later ones) and, applied,
            // moves the live chunk to the archive and starts its own; a nonce of an older chunk,
            // or of a settled slot, is read and marked in the archive.
            function useNonceAndCharge(c, p, head, n, state, deviceSlot) -> reason {
                let nonce := and(shr(HEAD_NONCE_SHIFT, head), U32)
                let chunk := shr(CHUNK_NONCE_SHIFT, nonce)
                let live := shr(SLOT_CHUNK_SHIFT, state)
                if eq(chunk, live) {
                    let used := shl(add(CHUNK_BITS_SHIFT, and(nonce, CHUNK_NONCE_MASK)), 1)
                    if and(state, used) {
                        reason := SKIP_NONCE_USED
                        leave
                    }
                    reason := charge(c, p, head, n)
                    if eq(reason, APPLIED) { sstore(deviceSlot, or(state, used)) }
                    leave
                }
                let device := and(state, DEVICE_ADDRESS_MASK)
                if gt(chunk, live) {
                    reason := charge(c, p, head, n)
                    if eq(reason, APPLIED) {
                        let bits := and(shr(CHUNK_BITS_SHIFT, state), U64)
                        if bits {
                            mstore(0x00, or(shl(NONCE_WORD_BITS, device), shr(CHUNKS_PER_WORD_SHIFT, live)))
                            mstore(0x20, mload(add(c, CTX_BITMAP_SLOT)))
                            let archived := keccak256(0x00, 0x40)
                            sstore(archived, or(sload(archived), shl(shl(CHUNK_NONCE_SHIFT, and(live, CHUNK_IN_WORD_MASK)), bits)))
                        }
                        sstore(deviceSlot, or(or(device, shl(SLOT_CHUNK_SHIFT, chunk)), shl(add(CHUNK_BITS_SHIFT, and(nonce, CHUNK_NONCE_MASK)), 1)))
                    }
                    leave
                }
                mstore(0x00, or(shl(NONCE_WORD_BITS, device), shr(NONCE_WORD_SHIFT, nonce)))
                mstore(0x20, mload(add(c, CTX_BITMAP_SLOT)))
                let slot := keccak256(0x00, 0x40)
                let bits := sload(slot)
                let bit := shl(and(nonce, NONCE_BIT_MASK), 1)
                if and(bits, bit) {
                    reason := SKIP_NONCE_USED
                    leave
                }
                reason := charge(c, p, head, n)
                if eq(reason, APPLIED) { sstore(slot, or(bits, bit)) }
            }

            // One batch: device, signature, checks, nonce, charge, record. Returns where the
            // next one starts.
            function processBatch(c, p) -> next {
                let head := calldataload(p)
                let n := and(shr(HEAD_N_SHIFT, head), U16)
                next := add(p, add(BATCH_FIXED_BYTES, mul(ENTRY_BYTES, n)))
                if gt(next, mload(add(c, CTX_END))) { fail(MALFORMED_BATCH_DATA, p) }
                let id := or(shl(DEVICE_NUMBER_BITS, mload(add(c, CTX_LICENSEE))), shr(HEAD_DEVICE_SHIFT, head))
                mstore(0x00, id)
                mstore(0x20, mload(add(c, CTX_DEVICES_SLOT)))
                let deviceSlot := keccak256(0x00, 0x40)
                let state := sload(deviceSlot)
                let device := and(state, DEVICE_ADDRESS_MASK)
                // Unknown device id, or not the device's signature: nothing is attributable to
                // the device, so the batch is skipped without an event.
                if iszero(device) { leave }
                let copy := add(mload(add(c, CTX_CURSOR)), RECORD_HEADER_BYTES)
                calldatacopy(copy, add(p, BATCH_HEADER_BYTES), mul(ENTRY_BYTES, n))
                if iszero(signedBy(c, p, head, n, device, copy)) { leave }
                let reason := checkHeader(c, head, n, state)
                if eq(reason, APPLIED) { reason := useNonceAndCharge(c, p, head, n, state, deviceSlot) }
                if iszero(eq(reason, APPLIED)) {
                    skip(c, id, and(shr(HEAD_NONCE_SHIFT, head), U32), reason)
                    leave
                }
                // The record: id | nonce | fromTime | toTime | charged, then n, then the entries
                // (copied already).
                let cursor := mload(add(c, CTX_CURSOR))
                mstore(cursor, or(shl(RECORD_ID_SHIFT, id), or(shl(RECORD_TIMES_SHIFT, and(shr(HEAD_TO_SHIFT, head), HEAD_TIMES_MASK)), mload(add(c, CTX_CHARGE)))))
                mstore(add(cursor, 0x20), or(shl(RECORD_N_SHIFT, n), and(mload(add(cursor, 0x20)), RECORD_AFTER_N_MASK)))
                mstore(add(c, CTX_CURSOR), add(cursor, add(RECORD_HEADER_BYTES, mul(ENTRY_BYTES, n))))
                mstore(add(c, CTX_APPLIED), add(mload(add(c, CTX_APPLIED)), 1))
            }

            // The entries against the table and the escrow. APPLIED when charged.
            function charge(c, p, head, n) -> reason {
                let entries := add(p, BATCH_HEADER_BYTES)
                let last := add(entries, mul(ENTRY_BYTES, n))
                let toTime := and(shr(HEAD_TO_SHIFT, head), U32)
                let t := mload(add(c, CTX_TABLE))
                let m := mload(add(c, CTX_MASK))
                let kt := or(shl(KEY_TIME_SHIFT, mload(add(c, CTX_TAG))), toTime)
                let chg, ovf, at := applyEntries(entries, last, t, m, kt)
                if lt(at, last) {
                    undoEntries(entries, at, t, m, kt)
                    reason := SKIP_MALFORMED_ENTRIES
                    leave
                }
                if and(ovf, OVERFLOW_BITS) {
                    undoEntries(entries, last, t, m, kt)
                    reason := SKIP_COUNTER_OVERFLOW
                    leave
                }
                chg := shr(ROW_AMOUNT_SHIFT, chg)
                let escrow := mload(add(c, CTX_ESCROW))
                if gt(chg, escrow) {
                    undoEntries(entries, last, t, m, kt)
                    reason := SKIP_INSUFFICIENT_ESCROW
                    leave
                }
                mstore(add(c, CTX_ESCROW), sub(escrow, chg))
                mstore(add(c, CTX_CHARGE), chg)
                reason := APPLIED
            }

            // One licensee's batches: escrow read once, written once.
            function processGroup(c, p) -> next {
                if gt(add(p, GROUP_HEADER_BYTES), mload(add(c, CTX_END))) { fail(MALFORMED_BATCH_DATA, p) }
                let head := calldataload(p)
                let licensee := shr(GROUP_LICENSEE_SHIFT, head)
                let count := and(shr(GROUP_COUNT_SHIFT, head), U16)
                if iszero(count) { fail(MALFORMED_BATCH_DATA, p) }
                next := add(p, GROUP_HEADER_BYTES)
                mstore(0x00, licensee)
                mstore(0x20, mload(add(c, CTX_ESCROW_SLOT)))
                let escrowSlot := keccak256(0x00, 0x40)
                let escrow := sload(escrowSlot)
                mstore(0x20, mload(add(c, CTX_METERED_SLOT)))
                mstore(add(c, CTX_LICENSE_BASE), keccak256(0x00, 0x40))
                mstore(0x20, mload(add(c, CTX_PREVIOUS_SLOT)))
                mstore(add(c, CTX_PREVIOUS_BASE), keccak256(0x00, 0x40))
                mstore(add(c, CTX_LICENSEE), licensee)
                mstore(add(c, CTX_TAG), add(mload(add(c, CTX_TAG)), TAG_STEP))
                mstore(add(c, CTX_ESCROW), escrow)
                for {} count { count := sub(count, 1) } { next := processBatch(c, next) }
                let left := mload(add(c, CTX_ESCROW))
                if iszero(eq(left, escrow)) { sstore(escrowSlot, left) }
            }

            for { let p := start } lt(p, end) {} { p := processGroup(ctx, p) }
        }
    }

    /// @dev Writes each touched work's totals once (only when they changed). The table holds
    ///      totals that passed the overflow check, so they fit their fields.
    function _flushWorks(uint256 ctx) private {
        uint256 table;
        uint256 size;
        assembly {
            table := mload(add(ctx, CTX_TABLE))
            size := mload(add(ctx, CTX_SIZE))
        }
        for (uint256 i; i < size; ++i) {
            uint256 row;
            uint256 stored;
            assembly {
                let e := add(table, shl(ROW_SHIFT, i))
                row := mload(e)
                stored := mload(add(e, ROW_STORED))
            }
            if (row == 0) continue;
            uint256 counters = (((row >> ROW_PLAYS_SHIFT) & PLAYS_MASK) << PLAYS_SHIFT) | (row >> ROW_AMOUNT_SHIFT);
            if (counters == stored & COUNTERS_MASK) continue;
            _workSlots[row & U32] = (stored & ~COUNTERS_MASK) | counters;
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
