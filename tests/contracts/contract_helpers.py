"""Helpers shared by the contract tests: expected custom errors, devices and play batches.

Kept apart from conftest.py so test modules (and the stateful test) can import them by name.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from brownie import chain
from brownie.exceptions import decode_typed_error
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hexbytes import HexBytes

from ledger.playbatch import Group, SKIP_REASONS, encode_submission, sign_batch

FLAT, METERED = 0, 1
BPS = 10_000
DAY = 86_400

# One METERED and one FLAT offer on the standard work; the split pays three payees.
RATE = 10
METERED_DURATION = 30 * DAY
FLAT_FEE = 1_000
FLAT_DURATION = 365 * DAY
SPLIT_BPS = [5_000, 3_000, 2_000]
ESCROW = 100_000
ISRC = b"GBAYE2400001"


def _split_types(sig: str) -> list[str]:
    inner = re.fullmatch(r"\w+\((.*)\)", sig).group(1)
    return [t for t in inner.split(",") if t]


def err(sig: str, *args) -> str:
    """What brownie reports for a revert with custom error `sig` and `args`.

    The error is ABI-encoded here from its signature (selector = keccak(sig)[:4]) and then
    rendered the way brownie renders any revert data, so a wrong selector or wrong arguments
    on chain can never match.
    """
    data = keccak(text=sig)[:4] + encode(_split_types(sig), list(args))
    return decode_typed_error("0x" + data.hex())


def reason(name: str) -> int:
    """The SkipReason enum value of a reason name."""
    return SKIP_REASONS.index(name)


def raw_entries(pairs) -> bytes:
    """Entry bytes exactly as given (no sorting or checks), for malformed batches."""
    return b"".join(struct.pack(">IH", w, c) for w, c in pairs)


def events(tx, name: str) -> list:
    """Every event `name` of a transaction, as a list (empty when none)."""
    if name not in tx.events:
        return []
    return [dict(e) for e in tx.events[name]]


def skips(tx) -> list[tuple[int, int, int]]:
    """(deviceId, nonce, reason) of every BatchSkipped event of a transaction."""
    return [(e["deviceId"], e["nonce"], e["reason"]) for e in events(tx, "BatchSkipped")]


def records_bytes(tx) -> bytes:
    """The `records` bytes of the PlaysRecorded event of a transaction."""
    return bytes(HexBytes(tx.events["PlaysRecorded"]["records"]))


@dataclass
class Device:
    """A device key registered (or not) under a licensee."""

    key: object  # eth_account LocalAccount
    licensee_index: int
    number: int

    @property
    def device_id(self) -> int:
        return (self.licensee_index << 32) | self.number

    @property
    def address(self) -> str:
        return self.key.address


def new_key():
    return Account.create()


DEVICE_REGISTRATION_TYPES = {
    "DeviceRegistration": [
        {"name": "device", "type": "address"},
        {"name": "licensee", "type": "address"},
        {"name": "nonce", "type": "uint256"},
    ]
}


def registration_digest(ledger, device: str, licensee: str, nonce: int) -> bytes:
    signable = encode_typed_data(
        domain_data={"name": "RoyaltyLedger", "version": "1", "chainId": chain.id, "verifyingContract": ledger.address},
        message_types=DEVICE_REGISTRATION_TYPES,
        message_data={"device": device, "licensee": str(licensee), "nonce": nonce},
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_registration(ledger, key, licensee, nonce=None) -> bytes:
    """The device key's proof of possession (65 bytes r|s|v) for `licensee` on this ledger."""
    if nonce is None:
        nonce = ledger.deviceRegistrationNonce(key.address)
    sig = key.unsafe_sign_hash(registration_digest(ledger, key.address, licensee, nonce))
    return sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])


def register_device(ledger, licensee, territory=b"GB", key=None) -> Device:
    key = key or new_key()
    tx = ledger.registerDevice(key.address, territory, sign_registration(ledger, key, licensee), {"from": licensee})
    device_id = tx.events["DeviceRegistered"]["deviceId"]
    return Device(key, device_id >> 32, device_id & 0xFFFFFFFF)


class Reporter:
    """Signs play batches like a device and submits them like the relayer."""

    def __init__(self, ledger, relayer):
        self.ledger = ledger
        self.relayer = relayer

    def sign(self, device: Device, nonce: int, entries: bytes, from_time=None, to_time=None, key=None):
        now = chain.time()
        to_time = now - 60 if to_time is None else to_time
        from_time = to_time - 3600 if from_time is None else from_time
        return sign_batch(key or device.key, chain.id, self.ledger.address, nonce, from_time, to_time, entries)

    @staticmethod
    def data(items, table_bits=None) -> bytes:
        """submitBatches calldata for [(device, batch)], consecutive licensees grouped."""
        groups: list[Group] = []
        for device, batch in items:
            if not groups or groups[-1].licensee_index != device.licensee_index:
                groups.append(Group(device.licensee_index))
            groups[-1].batches.append((device.number, batch))
        data = encode_submission(groups)
        if table_bits is not None:
            data = bytes([table_bits]) + data[1:]
        return data

    def submit(self, items, sender=None, table_bits=None):
        return self.ledger.submitBatches(self.data(items, table_bits), {"from": sender or self.relayer})
