// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {IWorkRegistry} from "../interfaces/IWorkRegistry.sol";
import {ILicensing} from "../interfaces/ILicensing.sol";
import {IPayouts} from "../interfaces/IPayouts.sol";

/// @title LedgerBase
/// @notice State shared by the ledger's modules (payouts, licensing, devices, plays).
/// @dev Money invariant (tested by property tests): the token balance of the ledger equals
///      the sum of licensee escrows + the sum of work accruals + the sum of payee balances.
///      Every function that moves tokens in or out changes exactly one of those sums by the
///      same amount; every internal move (play charge, fee accrual, distribution) takes from
///      one sum what it adds to another. Callers are `_msgSender()` everywhere (ERC-2771).
abstract contract LedgerBase is Context {
    /// @dev Work slot: accrued (bits 0..55) | licensed plays (56..95) | split commitment (96..255).
    ///      56 bits of accrual hold 7.2e16 units (72 billion tokens of 6 decimals) between two
    ///      distributions; 40 bits of plays hold 1.1e12 licensed plays per work, ever.
    uint256 internal constant ACCRUED_MASK = (1 << 56) - 1;
    uint256 internal constant PLAYS_SHIFT = 56;
    uint256 internal constant PLAYS_MASK = (1 << 40) - 1;
    uint256 internal constant COMMITMENT_SHIFT = 96;
    /// @dev The counters (accrual and plays) of a work slot.
    uint256 internal constant COUNTERS_MASK = (1 << COMMITMENT_SHIFT) - 1;

    /// @dev Device slot: key address (bits 0..159), then one of two layouts told apart by
    ///      DEVICE_SETTLED (bit 255):
    ///      - live (bit 255 clear: the key's first registration, not revoked; revokedAt and
    ///        notBefore are 0): the key's current nonce chunk, 64 nonces, in the slot itself:
    ///        used bits (160..223, bit nonce & 63) | chunk index (224..249, nonce >> 6). The key's
    ///        other chunks are in `_nonceBitmaps`, so a batch of the current chunk (the common
    ///        case) touches the device slot alone.
    ///      - settled (bit 255 set: revoked, or a later registration of a key): revokedAt
    ///        (160..191) | notBefore (192..223); every nonce of the key is in `_nonceBitmaps`.
    ///      Of a key's registrations at most one is live (a key is registered again only after
    ///      its registration is revoked, and revoking settles it, moving the chunk to the
    ///      archive), so a key's used nonces are its `_nonceBitmaps` words together with the
    ///      chunk of its live registration, if any.
    uint256 internal constant ADDRESS_MASK = (1 << 160) - 1;
    uint256 internal constant REVOKED_AT_SHIFT = 160;
    uint256 internal constant NOT_BEFORE_SHIFT = 192;
    uint256 internal constant TIME_MASK = 0xffffffff;
    uint256 internal constant DEVICE_SETTLED = 1 << 255;
    /// @dev Live slot: the chunk's used bits (64) and its index (26 bits: nonces are 32-bit).
    uint256 internal constant CHUNK_BITS_SHIFT = 160;
    uint256 internal constant CHUNK_BITS_MASK = (1 << 64) - 1;
    uint256 internal constant CHUNK_INDEX_SHIFT = 224;
    uint256 internal constant CHUNK_INDEX_MASK = (1 << 26) - 1;
    /// @dev A chunk is 64 nonces (nonce >> 6), a quarter of a `_nonceBitmaps` word (nonce >> 8).
    uint256 internal constant CHUNK_NONCE_SHIFT = 6;
    uint256 internal constant CHUNK_NONCE_MASK = 63;
    /// @dev Chunks per `_nonceBitmaps` word: 4 (chunk >> 2 is the word, (chunk & 3) * 64 its offset).
    uint256 internal constant CHUNKS_PER_WORD_SHIFT = 2;
    uint256 internal constant CHUNK_IN_WORD_MASK = 3;

    /// @dev METERED license lanes: 64 bits, four per word: lane (workId & 3) of word (workId >> 2)
    ///      holds expiry (bits 0..31) | rate (32..62) | hasPrevious (63). When hasPrevious is set,
    ///      the same lane of `_meteredPrevious` holds the previous period: prevExpiry (0..31) |
    ///      prevRate (32..63). The play path reads that second word only for flagged works.
    uint256 internal constant LANE_BITS = 64;
    uint256 internal constant LANE_MASK = (1 << 64) - 1;
    uint256 internal constant LANE_RATE_SHIFT = 32;
    uint256 internal constant HAS_PREVIOUS = 1 << 63;
    /// @dev Rates are 31 bits in a lane: at most 2,147 tokens of 6 decimals per play.
    uint256 internal constant MAX_RATE = (1 << 31) - 1;

    /// @dev Nonce bitmaps (the archive) are keyed by device address << 24 | (nonce >> 8)
    ///      (nonces are 32-bit): bit nonce & 255 of the word. A live device slot holds one
    ///      64-nonce chunk of them (see the device slot above).
    uint256 internal constant NONCE_WORD_BITS = 24;

    /// @notice The settlement token, fixed at deployment.
    IERC20 public immutable token;
    /// @notice The registry of works (ERC-721) whose owners control splits and terms.
    IWorkRegistry public immutable works;

    mapping(uint256 workId => uint256) internal _workSlots;
    mapping(uint256 workId => bool) internal _splitLocked;
    mapping(address payee => uint256) internal _balances;

    mapping(uint256 workId => mapping(ILicensing.LicenseKind => Terms)) internal _terms;
    mapping(uint32 licensee => mapping(uint256 word => uint256)) internal _metered;
    mapping(uint32 licensee => mapping(uint256 word => uint256)) internal _meteredPrevious;
    mapping(address licensee => mapping(uint256 workId => uint64)) internal _flatExpiry;
    mapping(uint32 licensee => uint256) internal _escrow;
    mapping(uint32 licensee => WithdrawalRequest) internal _withdrawals;
    mapping(address licensee => uint32) internal _licenseeIndex;
    mapping(uint32 licenseeIndex => address) internal _licensees;
    uint32 internal _licenseeCount;

    mapping(uint64 deviceId => uint256) internal _devices;
    /// @dev Per key: latest device id (bits 0..63) | registrations so far (64..95).
    mapping(address device => uint256) internal _deviceKeys;
    mapping(uint32 licensee => uint32) internal _deviceCounts;
    mapping(uint256 key => uint256) internal _nonceBitmaps;

    struct Terms {
        uint96 fee;
        uint32 ratePerPlay;
        uint32 duration;
        bool offered;
    }

    struct WithdrawalRequest {
        uint192 amount;
        uint64 availableAt;
    }

    /// @notice Only the owner of the work may do this.
    error NotWorkOwner(uint256 workId, address account);
    /// @notice A work's accrual would overflow its 56-bit counter (distribute it first).
    error AccrualOverflow(uint256 workId);

    constructor(IERC20 token_, IWorkRegistry works_) {
        token = token_;
        works = works_;
    }

    function _requireWorkOwner(uint256 workId) internal view {
        address sender = _msgSender();
        if (IERC721(address(works)).ownerOf(workId) != sender) revert NotWorkOwner(workId, sender);
    }

    /// @dev revokedAt and notBefore of a device slot (0 and 0 when live).
    function _deviceTimes(uint256 slot) internal pure returns (uint256 revokedAt, uint256 notBefore) {
        if (slot & DEVICE_SETTLED != 0) {
            revokedAt = (slot >> REVOKED_AT_SHIFT) & TIME_MASK;
            notBefore = (slot >> NOT_BEFORE_SHIFT) & TIME_MASK;
        }
    }

    /// @dev Word `word` of a key's nonce bitmap: the archive word with the live registration's
    ///      chunk (if it lies in that word) added.
    function _nonceWord(address device, uint256 word) internal view returns (uint256 bits) {
        bits = _nonceBitmaps[(uint256(uint160(device)) << NONCE_WORD_BITS) | word];
        uint256 slot = _devices[uint64(_deviceKeys[device])];
        if (slot & DEVICE_SETTLED == 0 && address(uint160(slot)) == device && device != address(0)) {
            uint256 chunk = (slot >> CHUNK_INDEX_SHIFT) & CHUNK_INDEX_MASK;
            if (chunk >> CHUNKS_PER_WORD_SHIFT == word) {
                bits |= ((slot >> CHUNK_BITS_SHIFT) & CHUNK_BITS_MASK) << ((chunk & CHUNK_IN_WORD_MASK) << CHUNK_NONCE_SHIFT);
            }
        }
    }

    /// @dev Moves a live slot's chunk into the archive (an OR: the archive never holds bits of
    ///      the live chunk or of a later one) and returns the slot settled with these times.
    function _settleDevice(uint256 slot, uint256 revokedAt, uint256 notBefore) internal returns (uint256) {
        if (slot & DEVICE_SETTLED == 0) {
            uint256 used = (slot >> CHUNK_BITS_SHIFT) & CHUNK_BITS_MASK;
            if (used != 0) {
                uint256 chunk = (slot >> CHUNK_INDEX_SHIFT) & CHUNK_INDEX_MASK;
                uint256 key = ((slot & ADDRESS_MASK) << NONCE_WORD_BITS) | (chunk >> CHUNKS_PER_WORD_SHIFT);
                _nonceBitmaps[key] |= used << ((chunk & CHUNK_IN_WORD_MASK) << CHUNK_NONCE_SHIFT);
            }
        }
        return (slot & ADDRESS_MASK) | (revokedAt << REVOKED_AT_SHIFT) | (notBefore << NOT_BEFORE_SHIFT) | DEVICE_SETTLED;
    }

    /// @dev Reverts for a recipient that would strand tokens (zero, or this ledger).
    function _checkRecipient(address to) internal view {
        if (to == address(0)) revert IPayouts.ZeroAddressRecipient();
        if (to == address(this)) revert IPayouts.RecipientIsLedger();
    }

    /// @dev Adds `amount` to a work's accrual.
    function _accrue(uint256 workId, uint256 amount) internal {
        if (amount == 0) return;
        uint256 slot = _workSlots[workId];
        if ((slot & ACCRUED_MASK) + amount > ACCRUED_MASK) revert AccrualOverflow(workId);
        _workSlots[workId] = slot + amount;
    }

    /// @dev The licensee index of `licensee`, assigned on first use.
    function _licenseeIndexOrNew(address licensee) internal returns (uint32 index) {
        index = _licenseeIndex[licensee];
        if (index == 0) {
            index = ++_licenseeCount;
            _licenseeIndex[licensee] = index;
            _licensees[index] = licensee;
            emit ILicensing.LicenseeRegistered(licensee, index);
        }
    }
}
