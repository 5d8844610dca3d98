"""Music identifiers with their real formats and check digits (ISRC: ISO 3901; ISWC: ISO 15707).

- ISRC (ISO 3901): ``CC XXX YY NNNNN``, 12 characters, no check digit. Stored compact and
  upper-case (``USSKG1912345``), shown with hyphens (``US-SKG-19-12345``).
- ISWC (ISO 15707): ``T`` + 9 digits + 1 check digit. ``T-034.524.680-1`` and ``T0345246801`` are
  the same code; the stored normal form is the display form ``T-034.524.680-1``.
"""

from __future__ import annotations

import re

from .errors import UserError

_ISRC_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
_ISWC_RE = re.compile(r"^T(\d{9})(\d)$")


class IdentifierError(UserError):
    """An ISRC or ISWC that is malformed or has a wrong check digit."""


def normalize_isrc(text: str) -> str:
    """``us-skg-19-12345`` / ``ISRC USSKG1912345`` -> ``USSKG1912345``; IdentifierError otherwise."""
    compact = re.sub(r"[\s-]", "", str(text)).upper()
    if compact.startswith("ISRC"):
        compact = compact[4:]
    if not _ISRC_RE.match(compact):
        raise IdentifierError(
            f"{text!r} is not an ISRC: expected 12 characters CC-XXX-YY-NNNNN "
            "(2 letters, 3 letters or digits, 7 digits)"
        )
    return compact


def format_isrc(isrc: str) -> str:
    return f"{isrc[:2]}-{isrc[2:5]}-{isrc[5:7]}-{isrc[7:]}"


def iswc_check_digit(digits: str) -> int:
    """C = (10 - (1 + sum(i * d_i)) mod 10) mod 10 over the 9 digits, weights 1..9."""
    total = 1 + sum(i * int(d) for i, d in enumerate(digits, start=1))
    return (10 - total % 10) % 10


def normalize_iswc(text: str) -> str:
    """Any spelling of an ISWC (``T0345246801``, ``t-034.524.680-1``) -> ``T-034.524.680-1``.

    IdentifierError for a malformed code, and one saying so for a wrong check digit."""
    compact = re.sub(r"[\s.\-]", "", str(text)).upper()
    m = _ISWC_RE.match(compact)
    if not m:
        raise IdentifierError(f"{text!r} is not an ISWC: expected T followed by 10 digits, like T-034.524.680-1")
    digits, check = m.group(1), int(m.group(2))
    expected = iswc_check_digit(digits)
    if check != expected:
        raise IdentifierError(f"ISWC {text!r} has a wrong check digit: {check}, expected {expected}")
    return f"T-{digits[:3]}.{digits[3:6]}.{digits[6:]}-{check}"
