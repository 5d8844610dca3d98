"""Readable money: the settlement token has 6 decimals; amounts are exact integers of units."""

from __future__ import annotations

import re

DECIMALS = 6
UNIT = 10**DECIMALS
_AMOUNT_RE = re.compile(r"^\$?\s*(\d{1,15})(?:\.(\d{1,6}))?$")


def usd(units: int) -> str:
    """1234567 -> '$1.23' when whole cents, else every digit: 1234567 -> '$1.234567'. Exact."""
    units = int(units)
    sign = "-" if units < 0 else ""
    dollars, rest = divmod(abs(units), UNIT)
    if rest % 10 ** (DECIMALS - 2) == 0:
        return f"{sign}${dollars:,}.{rest // 10 ** (DECIMALS - 2):02d}"
    return f"{sign}${dollars:,}.{rest:06d}".rstrip("0")


def parse_usd(text: str) -> int:
    """'12.5' / '$0.000001' -> units; ValueError for anything else (no floats, at most 6 decimals)."""
    m = _AMOUNT_RE.match(str(text).strip().replace(",", ""))
    if not m:
        raise ValueError(f"{text!r} is not an amount in dollars with at most 6 decimals")
    return int(m.group(1)) * UNIT + int((m.group(2) or "").ljust(DECIMALS, "0"))
