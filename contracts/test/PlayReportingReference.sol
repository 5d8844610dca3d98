// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IWorkRegistry} from "../interfaces/IWorkRegistry.sol";
import {RoyaltyLedgerHarness} from "./RoyaltyLedgerHarness.sol";

/// @title PlayReportingReference
/// @notice Test-only: the rules of `submitBatches` in plain Solidity, for the differential test
///         (tests/contracts/test_play_path_differential.py). It has the ledger's storage layout
///         (it is the harness ledger with this one function replaced), so the test runs a call
///         on the Yul ledger, rewinds, swaps this runtime code in at the same address, runs the
///         same call again and compares every event and state change. Written for clarity, not
///         gas: no packing tricks, no in-memory table, one step at a time.
contract PlayReportingReference is RoyaltyLedgerHarness {
    bytes32 private constant TYPEHASH =
        keccak256("PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)");
    uint256 private constant SKEW = 15 minutes;
    uint256 private constant MAX_N = 1024;
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    struct Batch {
        uint64 id;
        uint32 nonce;
        uint32 fromTime;
        uint32 toTime;
        uint256 n;
        uint256 signatureAt; // where r and yParityAndS are in the call's input
        bytes entries;
    }

    /// @dev What a call has accumulated per work (the Yul code's table, as plain arrays).
    struct Pending {
        uint256[] works; // every work an entry reached, in order (the table's rows)
        uint256[] plays;
        uint256[] amounts;
        uint256 count;
        uint256 capacity; // 2**tableBits
    }

    constructor(IERC20 token_, IWorkRegistry works_, address forwarder_)
        RoyaltyLedgerHarness(token_, works_, forwarder_)
    {}

    function submitBatches(bytes calldata data) external override returns (uint256 applied) {
        if (data.length == 0) revert MalformedBatchData(0);
        uint256 bits = uint8(data[0]);
        if (bits < 4 || bits > 14) revert BadTableBits(bits);
        uint256 base;
        assembly {
            base := data.offset
        }
        Pending memory pending;
        pending.capacity = 1 << bits;
        pending.works = new uint256[](pending.capacity);
        pending.plays = new uint256[](pending.capacity);
        pending.amounts = new uint256[](pending.capacity);
        bytes memory records;
        uint256 p = 1;
        while (p < data.length) {
            if (p + 6 > data.length) revert MalformedBatchData(base + p);
            uint32 licensee = uint32(bytes4(data[p:p + 4]));
            uint256 count = uint16(bytes2(data[p + 4:p + 6]));
            if (count == 0) revert MalformedBatchData(base + p);
            uint256 escrow = _escrow[licensee];
            uint256 left = escrow;
            p += 6;
            for (uint256 k; k < count; ++k) {
                Batch memory b;
                (b, p) = _parse(data, p, licensee, base);
                bool ok;
                uint256 charged;
                (ok, charged) = _process(b, left, pending);
                if (ok) {
                    left -= charged;
                    records = bytes.concat(
                        records,
                        abi.encodePacked(b.id, b.nonce, b.fromTime, b.toTime, uint96(charged), uint16(b.n), b.entries)
                    );
                    ++applied;
                }
            }
            if (left != escrow) _escrow[licensee] = left;
        }
        for (uint256 i; i < pending.count; ++i) {
            uint256 w = pending.works[i];
            _workSlots[w] += (pending.plays[i] << PLAYS_SHIFT) + pending.amounts[i];
        }
        if (applied != 0) emit PlaysRecorded(records);
    }

    function _parse(bytes calldata data, uint256 p, uint32 licensee, uint256 base)
        private
        pure
        returns (Batch memory b, uint256 next)
    {
        if (p + 18 > data.length) revert MalformedBatchData(base + p);
        b.n = uint16(bytes2(data[p + 16:p + 18]));
        next = p + 82 + 6 * b.n;
        if (next > data.length) revert MalformedBatchData(base + p);
        b.id = (uint64(licensee) << 32) | uint32(bytes4(data[p:p + 4]));
        b.nonce = uint32(bytes4(data[p + 4:p + 8]));
        b.fromTime = uint32(bytes4(data[p + 8:p + 12]));
        b.toTime = uint32(bytes4(data[p + 12:p + 16]));
        b.entries = data[p + 18:p + 18 + 6 * b.n];
        // The signature follows the entries: r, then y parity and s (EIP-2098).
        b.signatureAt = base + p + 18 + 6 * b.n;
    }

    /// @dev One batch: returns whether it applied and what it charged.
    function _process(Batch memory b, uint256 escrowLeft, Pending memory pending)
        private
        returns (bool ok, uint256 charged)
    {
        uint256 slot = _devices[b.id];
        address device = address(uint160(slot));
        if (device == address(0)) return (false, 0); // unknown device: no event
        if (!_signedBy(b, device)) return (false, 0); // not the device's signature: no event
        uint256 reason = _headerReason(b, slot);
        if (reason == 255) {
            if (_nonceUsed(slot, b.nonce)) {
                reason = uint256(SkipReason.NonceUsed);
            } else {
                (reason, charged) = _charge(b, escrowLeft, pending);
                if (reason == 255) _markNonce(b.id, slot, b.nonce);
            }
        }
        if (reason != 255) {
            emit BatchSkipped(b.id, b.nonce, SkipReason(reason));
            return (false, 0);
        }
        return (true, charged);
    }

    /// @dev Whether the key of device slot `slot` used `nonce`: a live slot's current chunk
    ///      answers for its own nonces and a later chunk is unused; anything else (an older
    ///      chunk, a settled slot) is in the key's archive word.
    function _nonceUsed(uint256 slot, uint256 nonce) private view returns (bool) {
        if (slot & DEVICE_SETTLED == 0) {
            uint256 liveChunk = (slot >> CHUNK_INDEX_SHIFT) & CHUNK_INDEX_MASK;
            uint256 chunk = nonce / 64;
            if (chunk == liveChunk) return (slot >> (CHUNK_BITS_SHIFT + nonce % 64)) & 1 == 1;
            if (chunk > liveChunk) return false;
        }
        return (_nonceBitmaps[_archiveKey(slot, nonce / 256)] >> (nonce % 256)) & 1 == 1;
    }

    /// @dev Marks `nonce` used: in the live chunk; or, for a later chunk, the live chunk goes
    ///      to the archive (OR into its word) and the slot starts the new chunk with `nonce`;
    ///      else in the archive word.
    function _markNonce(uint64 id, uint256 slot, uint256 nonce) private {
        if (slot & DEVICE_SETTLED == 0) {
            uint256 liveChunk = (slot >> CHUNK_INDEX_SHIFT) & CHUNK_INDEX_MASK;
            uint256 chunk = nonce / 64;
            if (chunk == liveChunk) {
                _devices[id] = slot | (1 << (CHUNK_BITS_SHIFT + nonce % 64));
                return;
            }
            if (chunk > liveChunk) {
                uint256 used = (slot >> CHUNK_BITS_SHIFT) & CHUNK_BITS_MASK;
                if (used != 0) _nonceBitmaps[_archiveKey(slot, liveChunk / 4)] |= used << (64 * (liveChunk % 4));
                _devices[id] = (slot & ADDRESS_MASK) | (chunk << CHUNK_INDEX_SHIFT) | (1 << (CHUNK_BITS_SHIFT + nonce % 64));
                return;
            }
        }
        _nonceBitmaps[_archiveKey(slot, nonce / 256)] |= 1 << (nonce % 256);
    }

    function _archiveKey(uint256 slot, uint256 word) private pure returns (uint256) {
        return ((slot & ADDRESS_MASK) << 24) | word;
    }

    function _signedBy(Batch memory b, address device) private view returns (bool) {
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(TYPEHASH, device, uint256(b.nonce), uint64(b.fromTime), uint64(b.toTime), keccak256(b.entries)))
        );
        bytes32 r = bytes32(msg.data[b.signatureAt:b.signatureAt + 32]);
        bytes32 vs = bytes32(msg.data[b.signatureAt + 32:b.signatureAt + 64]);
        uint256 s = uint256(vs) & ((1 << 255) - 1);
        if (s > HALF_ORDER) return false;
        uint8 v = uint8(27 + (uint256(vs) >> 255));
        (address signer,,) = ECDSA.tryRecover(digest, v, r, bytes32(s));
        return signer == device;
    }

    function _headerReason(Batch memory b, uint256 slot) private view returns (uint256) {
        if (b.toTime == 0 || b.fromTime > b.toTime || b.toTime > block.timestamp + SKEW) {
            return uint256(SkipReason.BadTimeRange);
        }
        uint256 revokedAt;
        uint256 notBefore;
        if (slot & DEVICE_SETTLED != 0) {
            revokedAt = (slot >> REVOKED_AT_SHIFT) & TIME_MASK;
            notBefore = (slot >> NOT_BEFORE_SHIFT) & TIME_MASK;
        }
        if ((revokedAt != 0 && b.toTime > revokedAt) || b.toTime <= notBefore) {
            return uint256(SkipReason.DeviceRevoked);
        }
        if (b.n == 0 || b.n > MAX_N) return uint256(SkipReason.MalformedEntries);
        return 255;
    }

    /// @dev What one batch would add, entry by entry.
    struct Adds {
        uint256[] rows;
        uint256[] plays;
        uint256[] amounts;
        uint256 charged;
        bool overflow;
    }

    /// @dev The entries against the licenses, the counters and the escrow; 255 when payable.
    function _charge(Batch memory b, uint256 escrowLeft, Pending memory pending)
        private
        view
        returns (uint256 reason, uint256 charged)
    {
        Adds memory a;
        a.rows = new uint256[](b.n);
        a.plays = new uint256[](b.n);
        a.amounts = new uint256[](b.n);
        uint256 previous;
        for (uint256 i; i < b.n; ++i) {
            uint256 w = uint32(bytes4(_slice(b.entries, 6 * i, 4)));
            uint256 c = uint16(bytes2(_slice(b.entries, 6 * i + 4, 2)));
            if (w <= previous || c == 0) return (uint256(SkipReason.MalformedEntries), 0);
            previous = w;
            _addEntry(b, i, w, c, pending, a);
        }
        if (a.overflow) return (uint256(SkipReason.CounterOverflow), 0);
        if (a.charged > escrowLeft) return (uint256(SkipReason.InsufficientEscrow), 0);
        for (uint256 i; i < b.n; ++i) {
            pending.plays[a.rows[i]] += a.plays[i];
            pending.amounts[a.rows[i]] += a.amounts[i];
        }
        return (255, a.charged);
    }

    /// @dev Entry i (work w, count c): its row, and if licensed its plays and amount.
    function _addEntry(Batch memory b, uint256 i, uint256 w, uint256 c, Pending memory pending, Adds memory a)
        private
        view
    {
        uint256 row = _row(pending, w);
        a.rows[i] = row;
        (bool licensed, uint256 rate) = _rateAt(uint32(b.id >> 32), w, b.toTime);
        if (!licensed) return;
        a.plays[i] = c;
        a.amounts[i] = c * rate;
        a.charged += c * rate;
        uint256 stored = _workSlots[w];
        if (
            ((stored >> PLAYS_SHIFT) & PLAYS_MASK) + pending.plays[row] + c > PLAYS_MASK
                || (stored & ACCRUED_MASK) + pending.amounts[row] + c * rate > ACCRUED_MASK
        ) a.overflow = true;
    }

    /// @dev The row of work `w`, added when new; the call reverts when the table is full (one
    ///      row always stays free, as in the Yul table).
    function _row(Pending memory pending, uint256 w) private pure returns (uint256) {
        for (uint256 i; i < pending.count; ++i) {
            if (pending.works[i] == w) return i;
        }
        if (pending.count + 1 >= pending.capacity) revert WorkTableFull(pending.capacity);
        pending.works[pending.count] = w;
        return pending.count++;
    }

    /// @dev The METERED rate for plays of `w` ending at `toTime`: the previous period's when
    ///      toTime <= prevExpiry, the current one's when toTime <= expiry, else unlicensed.
    function _rateAt(uint32 licensee, uint256 w, uint256 toTime) private view returns (bool, uint256) {
        (uint256 rate, uint256 expiry, uint256 prevRate, uint256 prevExpiry) = _meteredPeriods(licensee, w);
        if (toTime <= prevExpiry) return (true, prevRate);
        if (toTime <= expiry) return (true, rate);
        return (false, 0);
    }

    function _slice(bytes memory b, uint256 at, uint256 len) private pure returns (bytes memory out) {
        out = new bytes(len);
        for (uint256 i; i < len; ++i) {
            out[i] = b[at + i];
        }
    }
}
