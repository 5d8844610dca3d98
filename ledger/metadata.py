"""Work metadata: title and ISWC travel in the work's metadata URI.

The chain stores only a URI per work. When it is a ``data:`` URI holding JSON (what
``LedgerClient.register_work(title=..., iswc=...)`` writes), the indexer reads ``title`` /
``name`` and ``iswc`` from it. Other URIs (``ipfs://``, ``https://``) are stored as they are and
their title stays empty in the index: the indexer never fetches from the network, so a rebuild
always gives the same index.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

ISWC_RE = re.compile(r"^T-?\d{3}\.?\d{3}\.?\d{3}-?\d$")
ISRC_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
MAX_TITLE = 500


@dataclass(frozen=True)
class WorkMetadata:
    title: str | None = None
    iswc: str | None = None


def make_data_uri(title: str, iswc: str | None = None, **extra: str) -> str:
    """A compact ``data:application/json,...`` URI with the work's metadata."""
    doc = {"title": title}
    if iswc:
        doc["iswc"] = iswc
    doc.update(extra)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return "data:application/json," + quote(text, safe="")


def parse_metadata_uri(uri: str) -> WorkMetadata:
    """Title and ISWC from a data: URI with JSON; empty metadata for anything else or bad JSON."""
    if not uri.startswith("data:"):
        return WorkMetadata()
    header, sep, payload = uri[5:].partition(",")
    if not sep or not header.split(";")[0].strip().lower().endswith("json"):
        return WorkMetadata()
    try:
        raw = base64.b64decode(payload, validate=False) if header.endswith(";base64") else unquote_to_bytes(payload)
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return WorkMetadata()
    if not isinstance(doc, dict):
        return WorkMetadata()
    title = doc.get("title") or doc.get("name")
    iswc = doc.get("iswc")
    return WorkMetadata(title=str(title)[:MAX_TITLE] if title else None, iswc=str(iswc)[:15] if iswc else None)


def isrc_to_bytes12(isrc: str | None) -> bytes:
    """``GB-ABC-26-00001`` or ``GBABC2600001`` -> 12 bytes; None or '' -> zero."""
    if not isrc:
        return b"\x00" * 12
    compact = isrc.replace("-", "").strip().upper()
    if not ISRC_RE.match(compact):
        from .errors import UserError

        raise UserError(f"{isrc!r} is not an ISRC (CC-XXX-YY-NNNNN)")
    return compact.encode("ascii")


def isrc_from_bytes12(raw: bytes) -> str | None:
    raw = bytes(raw).rstrip(b"\x00")
    return raw.decode("ascii", "replace") if raw else None
