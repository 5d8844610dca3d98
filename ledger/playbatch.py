"""Play batches: the signed EIP-712 type, its entry encoding and the relayer calldata.

This module is the one Python definition of the formats of ``contracts/interfaces/IPlayReporting.sol``.
It depends only on eth-account / eth-abi / eth-utils, so tests, the relayer and tools share it.

Signed type (domain: name "RoyaltyLedger", version "1", chainId, ledger contract)::

    PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)

``entries`` is n records of 6 bytes: work id (uint32 big-endian) then count (uint16), work ids
strictly increasing, counts >= 1.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKey
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from .errors import BatchFormatError
from .events import DecodedEvent

DOMAIN_NAME = "RoyaltyLedger"
DOMAIN_VERSION = "1"
MAX_ENTRIES = 1024
MAX_COUNT = 0xFFFF
MAX_WORK_ID = 0xFFFFFFFF
MAX_NONCE = 0xFFFFFFFF
#: The table of works of one call: 2**bits rows, bits in MIN_TABLE_BITS..MAX_TABLE_BITS.
MIN_TABLE_BITS = 4
MAX_TABLE_BITS = 14
ENTRY_SIZE = 6
BATCH_HEADER_SIZE = 18  # deviceNumber u32, nonce u32, fromTime u32, toTime u32, n u16
SIGNATURE_SIZE = 64
GROUP_HEADER_SIZE = 6  # licenseeIndex u32, batchCount u16

PLAY_BATCH_TYPES = {
    "PlayBatch": [
        {"name": "device", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "fromTime", "type": "uint64"},
        {"name": "toTime", "type": "uint64"},
        {"name": "entries", "type": "bytes"},
    ]
}
PLAY_BATCH_TYPE_STRING = "PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)"
PLAY_BATCH_TYPEHASH = keccak(text=PLAY_BATCH_TYPE_STRING)

SKIP_REASONS = (
    "UnknownDevice",
    "DeviceRevoked",
    "BadTimeRange",
    "NonceUsed",
    "BadSignature",
    "MalformedEntries",
    "InsufficientEscrow",
    "CounterOverflow",
)


def skip_reason_name(code: int) -> str:
    """The name of a ``BatchSkipped`` reason code (``Reason<n>`` for a code this module does not know)."""
    return SKIP_REASONS[code] if 0 <= code < len(SKIP_REASONS) else f"Reason{code}"


def encode_entries(counts: Mapping[int, int] | Iterable[tuple[int, int]]) -> bytes:
    """Packs {work id: count} into the signed entry bytes (sorted by work id)."""
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    if not 1 <= len(items) <= MAX_ENTRIES:
        raise BatchFormatError(f"a batch holds 1 to {MAX_ENTRIES} works, not {len(items)}")
    out = bytearray()
    previous = 0
    for work_id, count in items:
        if not 1 <= work_id <= MAX_WORK_ID:
            raise BatchFormatError(f"work id {work_id} is out of range")
        if work_id <= previous:
            raise BatchFormatError(f"work id {work_id} appears twice")
        if not 1 <= count <= MAX_COUNT:
            raise BatchFormatError(f"count {count} for work {work_id} is not in 1..{MAX_COUNT}")
        out += struct.pack(">IH", work_id, count)
        previous = work_id
    return bytes(out)


def decode_entries(entries: bytes) -> list[tuple[int, int]]:
    """Unpacks entry bytes into [(work id, count)]."""
    if len(entries) % ENTRY_SIZE:
        raise BatchFormatError("entry bytes are not a multiple of 6")
    return list(struct.iter_unpack(">IH", entries))


def domain(chain_id: int, ledger_address: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(ledger_address),
    }


def batch_message(device: str, nonce: int, from_time: int, to_time: int, entries: bytes) -> dict[str, Any]:
    return {
        "device": to_checksum_address(device),
        "nonce": nonce,
        "fromTime": from_time,
        "toTime": to_time,
        "entries": entries,
    }


# --- the digest and the signer, computed directly --------------------------------------------
#
# PlayBatch is a fixed type, so its EIP-712 digest is hashed here field by field, as the
# contract does, instead of through eth-account's generic encoder (which parses the type on
# every call, ~10x slower); tests/ledger/test_playbatch_fast.py checks it against
# encode_typed_data on random batches.

DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_UINT64_MAX = 2**64 - 1
_UINT256_MAX = 2**256 - 1
#: secp256k1's group order and the largest s the contract accepts (lower half: no malleability).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_S = SECP256K1_N // 2
_S_MASK = (1 << 255) - 1


def _address_word(address: str) -> bytes:
    """A 0x address as its 32-byte ABI word (12 zero bytes, then the 20 address bytes)."""
    try:
        raw = bytes.fromhex(address[2:]) if address[:2] in ("0x", "0X") else b""
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise BatchFormatError(f"not a 20-byte 0x address: {address!r}")
    return bytes(12) + raw


@functools.lru_cache(maxsize=64)
def domain_separator(chain_id: int, ledger_address: str) -> bytes:
    """The EIP-712 domain separator of a (chain, ledger), computed once per pair."""
    if not 0 <= chain_id <= _UINT256_MAX:
        raise BatchFormatError(f"chain id {chain_id} is out of range")
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(text=DOMAIN_NAME)
        + keccak(text=DOMAIN_VERSION)
        + chain_id.to_bytes(32, "big")
        + _address_word(ledger_address)
    )


def batch_digest(
    chain_id: int, ledger_address: str, device: str, nonce: int, from_time: int, to_time: int, entries: bytes
) -> bytes:
    """The EIP-712 digest of a batch (what the contract recovers the signer from):
    ``keccak(0x1901 | domainSeparator | keccak(PLAY_BATCH_TYPEHASH | device | nonce | fromTime |
    toTime | keccak(entries)))``, each field a 32-byte word."""
    if not (0 <= nonce <= _UINT256_MAX and 0 <= from_time <= _UINT64_MAX and 0 <= to_time <= _UINT64_MAX):
        raise BatchFormatError("nonce must be a uint256 and the times uint64")
    struct_hash = keccak(
        PLAY_BATCH_TYPEHASH
        + _address_word(device)
        + nonce.to_bytes(32, "big")
        + from_time.to_bytes(32, "big")
        + to_time.to_bytes(32, "big")
        + keccak(bytes(entries))
    )
    return keccak(b"\x19\x01" + domain_separator(chain_id, ledger_address) + struct_hash)


def recover_signer(digest: bytes, signature: bytes) -> bytes | None:
    """The 20-byte address that signed ``digest`` with a 64-byte EIP-2098 ``signature``, or None
    when the contract would not accept the signature: r not in 1..n-1, or s not in 1..n/2 (the
    contract's low-s rule; a high-s twin of a valid signature is refused). The recovery id is the
    compact form's parity bit, so it is always 27 or 28 on chain. libsecp256k1 via coincurve."""
    if len(signature) != SIGNATURE_SIZE or len(digest) != 32:
        return None
    r = int.from_bytes(signature[:32], "big")
    vs = int.from_bytes(signature[32:], "big")
    s = vs & _S_MASK
    if not (0 < r < SECP256K1_N and 0 < s <= MAX_S):
        return None
    try:
        key = PublicKey.from_signature_and_message(
            signature[:32] + s.to_bytes(32, "big") + bytes([vs >> 255]), digest, hasher=None
        )
    except Exception:  # noqa: BLE001 - r is not the x of a curve point: no signer
        return None
    return keccak(key.format(compressed=False)[1:])[12:]


def batch_digest_generic(
    chain_id: int, ledger_address: str, device: str, nonce: int, from_time: int, to_time: int, entries: bytes
) -> bytes:
    """The same digest through eth-account's generic EIP-712 encoder: the reference
    :func:`batch_digest` is tested against (slow; not for the ingest path)."""
    signable = encode_typed_data(
        domain_data=domain(chain_id, ledger_address),
        message_types=PLAY_BATCH_TYPES,
        message_data=batch_message(device, nonce, from_time, to_time, entries),
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


#: The device key's proof of possession, signed once per registration (contracts/ledger/DeviceRegistry.sol).
DEVICE_REGISTRATION_TYPES = {
    "DeviceRegistration": [
        {"name": "device", "type": "address"},
        {"name": "licensee", "type": "address"},
        {"name": "nonce", "type": "uint256"},
    ]
}


def device_registration_digest(chain_id: int, ledger_address: str, device: str, licensee: str, nonce: int) -> bytes:
    """The EIP-712 digest a device key signs so that ``licensee`` may register it (``nonce`` is the
    contract's ``deviceRegistrationNonce(device)``: how often the key was registered before)."""
    signable = encode_typed_data(
        domain_data=domain(chain_id, ledger_address),
        message_types=DEVICE_REGISTRATION_TYPES,
        message_data={"device": to_checksum_address(device), "licensee": to_checksum_address(licensee), "nonce": nonce},
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_device_registration(
    private_key: Any, chain_id: int, ledger_address: str, licensee: str, nonce: int = 0
) -> bytes:
    """The 65-byte (r, s, v) proof that the device key agrees to be registered by ``licensee``."""
    account = private_key if hasattr(private_key, "unsafe_sign_hash") else Account.from_key(private_key)
    digest = device_registration_digest(chain_id, ledger_address, account.address, licensee, nonce)
    sig = account.unsafe_sign_hash(digest)
    return bytes(sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v]))


def sorted_split(payees: Sequence[str], bps: Sequence[int]) -> tuple[list[str], list[int]]:
    """A split in the contract's order: payees strictly ascending by address value (the first,
    lowest address gets a distribution's rounding remainder)."""
    if len(payees) != len(bps):
        raise BatchFormatError(f"{len(payees)} payees but {len(bps)} shares")
    pairs = sorted(zip(payees, bps, strict=True), key=lambda pair: int(pair[0], 16))
    return [to_checksum_address(p) for p, _ in pairs], [b for _, b in pairs]


#: A packed split word (RoyaltyLedger.distributePacked): payee << 96 | bps.
PACKED_PAYEE_SHIFT = 96


def pack_split(payees: Sequence[str], bps: Sequence[int]) -> list[int]:
    """The split as `distributePacked` takes it: one word per payee, ``int(payee) << 96 | bps``,
    in the contract's order (:func:`sorted_split`)."""
    ordered, shares = sorted_split(payees, bps)
    return [(int(p, 16) << PACKED_PAYEE_SHIFT) | int(b) for p, b in zip(ordered, shares, strict=True)]


def to_compact_signature(r: int, s: int, v: int) -> bytes:
    """EIP-2098: r (32 bytes) then yParity << 255 | s (32 bytes)."""
    y_parity = v - 27 if v >= 27 else v
    return r.to_bytes(32, "big") + ((y_parity << 255) | s).to_bytes(32, "big")


@dataclass(frozen=True)
class SignedBatch:
    """A batch as a device signs it, with its 64-byte compact signature."""

    device: str
    nonce: int
    from_time: int
    to_time: int
    entries: bytes
    signature: bytes

    @property
    def plays(self) -> int:
        return sum(c for _, c in decode_entries(self.entries))

    def encoded_size(self) -> int:
        return BATCH_HEADER_SIZE + len(self.entries) + SIGNATURE_SIZE

    def recover(self, chain_id: int, ledger_address: str) -> str:
        digest = batch_digest(
            chain_id, ledger_address, self.device, self.nonce, self.from_time, self.to_time, self.entries
        )
        r = int.from_bytes(self.signature[:32], "big")
        vs = int.from_bytes(self.signature[32:], "big")
        v = (vs >> 255) + 27
        s = vs & ((1 << 255) - 1)
        return str(Account._recover_hash(digest, vrs=(v, r, s)))


def sign_batch(
    private_key: Any, chain_id: int, ledger_address: str, nonce: int, from_time: int, to_time: int, entries: bytes
) -> SignedBatch:
    """Signs a batch with a device key (hex string, bytes or eth-account LocalAccount)."""
    account = private_key if hasattr(private_key, "unsafe_sign_hash") else Account.from_key(private_key)
    if not 0 <= nonce <= MAX_NONCE:
        raise BatchFormatError(f"nonce {nonce} is out of range")
    if not 0 <= from_time <= to_time <= 0xFFFFFFFF:
        raise BatchFormatError("times must satisfy 0 <= fromTime <= toTime < 2**32")
    digest = batch_digest(chain_id, ledger_address, account.address, nonce, from_time, to_time, entries)
    sig = account.unsafe_sign_hash(digest)
    return SignedBatch(account.address, nonce, from_time, to_time, entries, to_compact_signature(sig.r, sig.s, sig.v))


@dataclass
class Group:
    """Batches of one licensee, in the order they are applied."""

    licensee_index: int
    batches: list[tuple[int, SignedBatch]] = field(default_factory=list)  # (device number, batch)


def encode_batch(device_number: int, batch: SignedBatch) -> bytes:
    n = len(batch.entries) // ENTRY_SIZE
    return (
        struct.pack(">IIIIH", device_number, batch.nonce, batch.from_time, batch.to_time, n)
        + batch.entries
        + batch.signature
    )


def table_bits_for(distinct_works: int) -> int:
    """The smallest table (load factor <= 1/2) for a call touching this many works."""
    bits = MIN_TABLE_BITS
    while (1 << bits) < 2 * max(distinct_works, 1):
        bits += 1
    if bits > MAX_TABLE_BITS:
        raise BatchFormatError(f"{distinct_works} distinct works do not fit one call")
    return bits


def encode_submission(groups: Sequence[Group]) -> bytes:
    """The `data` argument of RoyaltyLedger.submitBatches for these groups."""
    works: set[int] = set()
    body = bytearray()
    for group in groups:
        if not group.batches:
            continue
        if len(group.batches) > 0xFFFF:
            raise BatchFormatError("a group holds at most 65535 batches")
        body += struct.pack(">IH", group.licensee_index, len(group.batches))
        for device_number, batch in group.batches:
            works.update(w for w, _ in decode_entries(batch.entries))
            body += encode_batch(device_number, batch)
    return bytes([table_bits_for(len(works))]) + bytes(body)


def split_device_id(device_id: int) -> tuple[int, int]:
    """(licensee index, device number) of a device id."""
    return device_id >> 32, device_id & 0xFFFFFFFF


def make_device_id(licensee_index: int, device_number: int) -> int:
    return (licensee_index << 32) | device_number


@dataclass(frozen=True)
class PlayRecord:
    """One applied batch from a PlaysRecorded event."""

    device_id: int
    nonce: int
    from_time: int
    to_time: int
    charged: int
    entries: list[tuple[int, int]]

    @property
    def licensee_index(self) -> int:
        return self.device_id >> 32


def decode_play_records(records: bytes) -> list[PlayRecord]:
    """Parses the `records` bytes of a PlaysRecorded event."""
    out = []
    i = 0
    while i < len(records):
        device_id, nonce, from_time, to_time = struct.unpack_from(">QIII", records, i)
        charged = int.from_bytes(records[i + 20 : i + 32], "big")
        (n,) = struct.unpack_from(">H", records, i + 32)
        start = i + 34
        entries = decode_entries(records[start : start + ENTRY_SIZE * n])
        out.append(PlayRecord(device_id, nonce, from_time, to_time, charged, entries))
        i = start + ENTRY_SIZE * n
    return out


@dataclass(frozen=True)
class AppliedBatch:
    """A batch a transaction applied: its record and where the event was logged."""

    record: PlayRecord
    tx_hash: str
    block_number: int


@dataclass
class BatchOutcome:
    """What ``submitBatches`` calls did to their batches, keyed by (device id, nonce)."""

    applied: dict[tuple[int, int], AppliedBatch] = field(default_factory=dict)
    skipped: dict[tuple[int, int], str] = field(default_factory=dict)  # -> reason name

    @property
    def records(self) -> list[PlayRecord]:
        return [a.record for a in self.applied.values()]


def batch_outcome(events: Iterable[DecodedEvent]) -> BatchOutcome:
    """The one decoder of batch results: ``PlaysRecorded`` and ``BatchSkipped`` events (decoded
    by :class:`ledger.events.EventDecoder`) -> applied records and skip reasons. Other events are
    ignored."""
    outcome = BatchOutcome()
    for event in events:
        if event.name == "PlaysRecorded":
            for record in decode_play_records(event.args["records"]):
                outcome.applied[(record.device_id, record.nonce)] = AppliedBatch(
                    record, event.tx_hash, event.block_number
                )
        elif event.name == "BatchSkipped":
            key = (int(event.args["deviceId"]), int(event.args["nonce"]))
            outcome.skipped[key] = skip_reason_name(int(event.args["reason"]))
    return outcome


def split_shares(amount: int, bps: Sequence[int]) -> list[int]:
    """Each payee's credit of a distribution: floor(amount*bps/10000), remainder to the first."""
    parts = [amount * b // 10_000 for b in bps]
    parts[0] += amount - sum(parts)
    return parts


# --- packing many batches into relayer calls ------------------------------------------------

#: A default geth node refuses transactions whose input exceeds 128 KiB into its mempool.
MAX_CALL_BYTES = 131_072
_CALL_OVERHEAD = 4 + 32 + 32  # selector, bytes offset, bytes length (then data padded to 32)


@dataclass(frozen=True)
class QueuedBatch:
    """A batch waiting for a relayer call, with where its device sits on chain."""

    licensee_index: int
    device_number: int
    batch: SignedBatch
    ref: object = None  # the caller's handle (e.g. a pending-batch row id)


def call_input_size(data_length: int) -> int:
    """Bytes of a submitBatches transaction input whose `data` is this long."""
    return _CALL_OVERHEAD + (data_length + 31) // 32 * 32


def plan_calls(
    queue: Iterable[QueuedBatch], max_bytes: int = MAX_CALL_BYTES, max_batches: int | None = None
) -> list[list[QueuedBatch]]:
    """Packs batches into as few calls as fit under `max_bytes` of transaction input.

    Batches are sorted by licensee, device and nonce, so each call reads a licensee's escrow
    and license words once and a device's slot once (the layout the contract is built for).
    """
    ordered = sorted(queue, key=lambda q: (q.licensee_index, q.device_number, q.batch.nonce))
    calls: list[list[QueuedBatch]] = []
    current: list[QueuedBatch] = []
    size = 1  # tableBits
    last_licensee = None
    for item in ordered:
        add = item.batch.encoded_size() + (GROUP_HEADER_SIZE if item.licensee_index != last_licensee else 0)
        full = max_batches is not None and len(current) >= max_batches
        if current and (call_input_size(size + add) > max_bytes or full):
            calls.append(current)
            current, size, last_licensee = [], 1, None
            add = item.batch.encoded_size() + GROUP_HEADER_SIZE
        if call_input_size(size + add) > max_bytes:
            raise BatchFormatError("a single batch does not fit one call")
        current.append(item)
        size += add
        last_licensee = item.licensee_index
    if current:
        calls.append(current)
    return calls


def encode_call(items: Sequence[QueuedBatch]) -> bytes:
    """The submitBatches `data` for items already in call order (see plan_calls)."""
    groups: list[Group] = []
    for item in items:
        if not groups or groups[-1].licensee_index != item.licensee_index:
            groups.append(Group(item.licensee_index))
        groups[-1].batches.append((item.device_number, item.batch))
    return encode_submission(groups)


def shrink_for_gas(count: int, estimate: int, gas_cap: int) -> int:
    """How many of `count` batches to try next when their call needs `estimate` > `gas_cap`."""
    return max(1, min(count - 1, int(count * gas_cap / estimate * 0.95)))
