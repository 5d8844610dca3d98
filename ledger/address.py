"""Ethereum addresses without web3: EIP-55 checksums for the commands that only read the index.

``ledger statement`` and ``ledger works`` take addresses but never talk to a node; importing web3
(or eth-utils) only to checksum one costs them most of their start-up. The keccak here is
pycryptodome's, the backend eth-hash uses (a dependency of eth-account). :func:`ledger.chain.checksum`
is this function.
"""

from __future__ import annotations

import re

from .errors import UserError

_HEX_ADDRESS = re.compile(r"(0x|0X)?[0-9a-fA-F]{40}")


def _keccak_hex(data: bytes) -> str:
    from Crypto.Hash import keccak

    return keccak.new(data=data, digest_bits=256).hexdigest()


def is_address(value: object) -> bool:
    """40 hex digits, with or without 0x, in any case (what ``eth_utils.is_address`` accepts as text)."""
    return isinstance(value, str) and _HEX_ADDRESS.fullmatch(value) is not None


def to_checksum_address(value: str) -> str:
    """The EIP-55 form of a 40-hex-digit address (with or without 0x)."""
    digits = (value[2:] if value[:2] in ("0x", "0X") else value).lower()
    hashed = _keccak_hex(digits.encode("ascii"))
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, hashed[:40], strict=True))


def checksum(address: str, what: str = "address") -> str:
    """A checksummed address, or UserError naming what was wrong."""
    if not is_address(address):
        raise UserError(f"{what} {address!r} is not an Ethereum address (0x + 40 hex digits)")
    return to_checksum_address(address)
