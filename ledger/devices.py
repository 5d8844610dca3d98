"""A licensee's devices in the portal: names and territories (off chain), registration proofs,
what each device's batches became (pending, charged, skipped), and its provisioning file.

The chain knows a device by its key and id; the portal adds a name and keeps the registration's
EIP-712 domain (chain id, ledger), so the provisioning file can be written without a node.
``portal_devices`` is migrated by Alembic revision ``0400``.

Every query here is scoped to one licensee: by the licensee's address in the index (``devices``,
``plays``) and by the device ids of that licensee in the pending store (``pending_batches``),
so nothing of another licensee's devices is ever read for a page.

A device's proof of possession (``scripts/device.py register-proof``) is checked here with the
same EIP-712 digest the contract checks (:func:`ledger.playbatch.device_registration_digest`)
before anything is sent, so a proof made for another licensee, ledger, chain or registration
nonce is refused with a message that says which, at no gas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import BigInteger, ColumnElement, Engine, ForeignKey, Index, Integer, String, and_, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from .db import session_scope
from .errors import UserError
from .models import Base, BatchSkip, Device, IndexerCheckpoint, Play, PlayBatch, Work
from .pending import CONFIRMED, INFLIGHT, PENDING, REJECTED, PendingBatch
from .playbatch import (
    decode_entries,
    device_registration_digest,
    make_device_id,
    recover_signer,
    split_device_id,
    to_compact_signature,
)

_ID = BigInteger().with_variant(Integer, "sqlite")
PROOF_SIZE = 65  # r, s, v: what registerDevice takes
MAX_NAME = 80
#: How far past the chain's registration nonce a proof's nonce is looked for, to explain a mismatch.
_NONCE_PROBE = 4
#: Portal action statuses of an action on its way (ledger.gasless).
ACTION_WAITING = ("queued", "awaiting_signature", "submitted")


class DeviceProofError(UserError):
    """A registration proof the portal refuses before sending anything (message safe to show)."""


# ----------------------------------------------------------------------------- model


class PortalDevice(Base):
    """A device registered through the portal: its name, territory and registration domain."""

    __tablename__ = "portal_devices"
    __table_args__ = (Index(None, "user_id", "address"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id"))
    address: Mapped[str] = mapped_column(String(42))  # the device key, EIP-55
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    territory: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    chain_id: Mapped[int] = mapped_column(BigInteger)
    ledger: Mapped[str] = mapped_column(String(42))
    device_id: Mapped[int | None] = mapped_column(BigInteger)  # known once the registration is confirmed
    register_action_id: Mapped[int | None] = mapped_column(BigInteger)
    revoke_action_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


def add_device(
    engine: Engine, user_id: int, address: str, name: str, territory: str, chain_id: int, ledger: str
) -> PortalDevice:
    row = PortalDevice(
        user_id=user_id,
        address=to_checksum_address(address),
        name=name.strip()[:MAX_NAME],
        territory=territory,
        chain_id=chain_id,
        ledger=to_checksum_address(ledger),
        created_at=int(time.time()),
    )
    with session_scope(engine) as session:
        session.add(row)
    return row


def update_device(engine: Engine, row_id: int, **values: Any) -> None:
    with session_scope(engine) as session:
        row = session.get(PortalDevice, row_id)
        if row is None:
            raise UserError(f"no portal device {row_id}")
        for key, value in values.items():
            setattr(row, key, value)


def portal_rows(engine: Engine, user_id: int, address: str | None = None) -> list[PortalDevice]:
    """The user's portal devices (newest first), optionally of one key."""
    with session_scope(engine) as session:
        q = select(PortalDevice).where(PortalDevice.user_id == user_id)
        if address is not None:
            q = q.where(PortalDevice.address == to_checksum_address(address))
        return list(session.scalars(q.order_by(PortalDevice.id.desc())))


# ----------------------------------------------------------------------------- territory


def territory_code(text: str) -> str:
    """An ISO 3166-1 alpha-2 code (upper case) or a UserError naming the problem."""
    import pycountry

    code = (text or "").strip().upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha() or pycountry.countries.get(alpha_2=code) is None:
        raise UserError(f"{text!r} is not an ISO 3166-1 alpha-2 country code (GB, FR, US...)")
    return code


def territory_name(code: str) -> str:
    import pycountry

    country = pycountry.countries.get(alpha_2=code)
    return str(country.name) if country is not None else code


# ----------------------------------------------------------------------------- proofs


@dataclass(frozen=True)
class DeviceProof:
    """A registration proof as pasted or uploaded: the bare signature, or `register-proof --json`."""

    signature: bytes
    device: str | None = None
    licensee: str | None = None
    ledger: str | None = None
    chain_id: int | None = None
    nonce: int | None = None


def _hex_signature(text: str) -> bytes:
    raw = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        sig = bytes.fromhex(raw)
    except ValueError:
        raise DeviceProofError(
            "the proof is not hexadecimal: paste the line `device.py register-proof` printed (0x and 130 hex digits)"
        ) from None
    if len(sig) != PROOF_SIZE:
        raise DeviceProofError(
            f"the proof has {len(sig)} bytes, not {PROOF_SIZE}: paste the whole line `device.py register-proof` printed"
        )
    return sig


def _json_address(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not is_address(value):
        raise DeviceProofError(f"the proof's {key!r} is not an address")
    return to_checksum_address(value)


def parse_proof(text: str) -> DeviceProof:
    """A proof from what the licensee pasted or uploaded: ``0x`` + 65 bytes, or the JSON object of
    ``device.py register-proof --json``."""
    text = (text or "").strip()
    if not text:
        raise DeviceProofError("paste the proof `device.py register-proof` printed, or upload its --json output")
    if not text.startswith("{"):
        return DeviceProof(_hex_signature(text))
    try:
        doc = json.loads(text)
    except ValueError:
        raise DeviceProofError("the uploaded proof is not valid JSON (use `register-proof --json`)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("signature"), str):
        raise DeviceProofError('the proof JSON has no "signature" (use `register-proof --json`)')
    try:
        chain_id = None if doc.get("chainId") is None else int(doc["chainId"])
        nonce = None if doc.get("nonce") is None else int(doc["nonce"])
    except (TypeError, ValueError):
        raise DeviceProofError("the proof's chainId and nonce must be integers") from None
    return DeviceProof(
        _hex_signature(doc["signature"]),
        device=_json_address(doc, "device"),
        licensee=_json_address(doc, "licensee"),
        ledger=_json_address(doc, "ledger"),
        chain_id=chain_id,
        nonce=nonce,
    )


def proof_signer(signature: bytes, chain_id: int, ledger: str, device: str, licensee: str, nonce: int) -> str | None:
    """Who signed a DeviceRegistration(device, licensee, nonce) proof in the ledger's domain, by
    the contract's rules (65 bytes r, s, v with v 27 or 28, low s); None when no one can have."""
    if len(signature) != PROOF_SIZE or signature[64] not in (27, 28, 0, 1):
        return None
    compact = to_compact_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    )
    digest = device_registration_digest(chain_id, ledger, device, licensee, nonce)
    signer = recover_signer(digest, compact)
    return to_checksum_address(signer) if signer is not None else None


def check_proof(
    proof: DeviceProof, device: str | None, licensee: str, chain_id: int, ledger: str, registration_nonce: int
) -> str:
    """The device address the proof registers, when ``licensee`` may register it on ``ledger`` of
    ``chain_id`` now (the key registered ``registration_nonce`` times before); otherwise a
    DeviceProofError saying what the proof was made for and the command that makes the right one."""
    licensee, ledger = to_checksum_address(licensee), to_checksum_address(ledger)
    if device:
        if not is_address(device.strip()):
            raise DeviceProofError(f"{device!r} is not a device address (0x and 40 hex digits)")
        device = to_checksum_address(device.strip())
    if proof.device and device and proof.device != device:
        raise DeviceProofError(f"the proof is for device {proof.device}, not {device}")
    device = device or proof.device
    if not device:
        raise DeviceProofError("give the device address (`device.py keygen` printed it; `status` shows it)")
    command = f"device.py register-proof --licensee {licensee} --ledger {ledger} --chain-id {chain_id}" + (
        f" --nonce {registration_nonce}" if registration_nonce else ""
    )
    if proof.licensee is not None and proof.licensee != licensee:
        raise DeviceProofError(
            f"this proof was made for licensee {proof.licensee}, but you are {licensee}: "
            f"run `{command}` on the device and paste its output"
        )
    if proof.ledger is not None and proof.ledger != ledger:
        raise DeviceProofError(
            f"this proof was made for ledger {proof.ledger}, but this portal's ledger is {ledger}: run `{command}`"
        )
    if proof.chain_id is not None and proof.chain_id != chain_id:
        raise DeviceProofError(
            f"this proof was made for chain {proof.chain_id}, but this portal's chain is {chain_id}: run `{command}`"
        )
    if proof.nonce is not None and proof.nonce != registration_nonce:
        raise DeviceProofError(
            f"this proof was made with registration nonce {proof.nonce}, but this key was registered "
            f"{registration_nonce} time(s) before, so the ledger expects nonce {registration_nonce}: run `{command}`"
        )
    if proof_signer(proof.signature, chain_id, ledger, device, licensee, registration_nonce) == device:
        return device
    for nonce in range(registration_nonce + _NONCE_PROBE):
        if (
            nonce != registration_nonce
            and proof_signer(proof.signature, chain_id, ledger, device, licensee, nonce) == device
        ):
            raise DeviceProofError(
                f"this proof was made with registration nonce {nonce}, but the ledger expects "
                f"{registration_nonce} (the key was registered {registration_nonce} time(s) before): run `{command}`"
            )
    raise DeviceProofError(
        f"this is not device {device}'s proof for you (licensee {licensee}) on ledger {ledger}, chain {chain_id}: "
        f"it was made for another licensee, ledger, chain or key. Run `{command}` on the device and paste its output"
    )


# ----------------------------------------------------------------------------- what became of batches

#: What a licensee can do about each reason a batch was skipped or held back.
ADVICE: dict[str, str] = {
    "InsufficientEscrow": "Your escrow does not cover these plays: top up your escrow; the batch is retried "
    "about a minute later, nothing is lost.",
    "UnlicensedLimit": "None of these plays is licensed and your devices have used today's allowance of "
    "unlicensed plays: buy a license that covers them (a license covers plays up to its expiry) and the "
    "batch goes out; otherwise it waits for tomorrow's allowance. Nothing is lost.",
    "UnknownDevice": "The ledger did not know this device when the batch was relayed: check that its "
    "registration is confirmed; plays it reports from now on are charged.",
    "DeviceRevoked": "The device was revoked before these plays: register its key again (a new proof) "
    "if it should keep reporting.",
    "BadTimeRange": "The plays are dated before the device's registration or in the future: check the device's clock.",
    "NonceUsed": "The ledger has seen this batch number already (a resend): nothing to do.",
    "BadSignature": "The batch's signature does not match the device key: check the device's key and "
    "provisioning file (chain id and ledger).",
    "MalformedEntries": "The batch's content was malformed: update scripts/device.py on the device.",
    "CounterOverflow": "A play counter would overflow: report the plays in smaller batches.",
    "UnknownDeviceOrBadSignature": "The ledger could not attribute the batch to a registered device: check "
    "that the registration is confirmed and that the device's provisioning file names this ledger and chain.",
}
GENERIC_ADVICE = "The ledger refused this batch; it will not be retried. Contact the operator if it recurs."


def advice(reason: str | None) -> str:
    return ADVICE.get(reason or "", GENERIC_ADVICE)


@dataclass
class BatchRow:
    device: str
    device_id: int
    nonce: int
    plays: int
    state: str  # pending | inflight | confirmed | rejected (pending with a reason: InsufficientEscrow, UnlicensedLimit)
    reason: str | None
    received_at: int | None  # unix seconds (pending store)
    from_time: int
    to_time: int
    charged: int | None = None
    tx_hash: str | None = None

    @property
    def advice(self) -> str:
        return advice(self.reason)

    @property
    def waiting(self) -> bool:
        return self.state in (PENDING, INFLIGHT)


@dataclass
class WorkPlays:
    work_id: int
    title: str | None
    plays: int = 0
    licensed: int = 0
    charged: int = 0
    pending: int = 0  # plays in batches not on chain yet

    @property
    def unlicensed(self) -> int:
        return self.plays - self.licensed


@dataclass
class DeviceSummary:
    """One device key of a licensee, as its pages show it."""

    address: str
    name: str | None
    territory: str | None
    device_ids: list[int]
    state: str  # registering | active | revoking | revoked | failed | unconfirmed
    portal: PortalDevice | None = None
    registered_at: int | None = None
    revoked_at: int | None = None
    last_seen: int | None = None  # unix seconds: last batch received or recorded
    last_nonce: int | None = None
    pending_batches: int = 0
    pending_plays: int = 0
    charged_batches: int = 0
    skipped_batches: int = 0

    @property
    def active_id(self) -> int | None:
        return self.device_ids[-1] if self.device_ids and self.state in ("active", "revoking") else None


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


@dataclass
class LicenseeView:
    """Everything the device pages read for one licensee, loaded once per request."""

    devices: list[DeviceSummary]
    batches: list[BatchRow] = field(default_factory=list)

    def device(self, address: str) -> DeviceSummary | None:
        address = address.lower()
        return next((d for d in self.devices if d.address.lower() == address), None)

    def batches_of(self, address: str) -> list[BatchRow]:
        return [b for b in self.batches if b.device.lower() == address.lower()]

    @property
    def waiting(self) -> list[BatchRow]:
        return [b for b in self.batches if b.waiting]

    @property
    def skipped(self) -> list[BatchRow]:
        return [b for b in self.batches if b.state == REJECTED or (b.waiting and b.reason)]


def licensee_view(
    engine: Engine, user_id: int, licensee: str, action_status: dict[int, str] | None = None, limit: int = 500
) -> LicenseeView:
    """The licensee's devices (registered in the portal or elsewhere) and their batches.

    ``action_status`` maps portal action ids to their status (``ledger.gasless``), to tell a
    registration or revocation on its way from a confirmed one."""
    licensee = to_checksum_address(licensee)
    statuses = action_status or {}
    rows = portal_rows(engine, user_id)
    with session_scope(engine) as session:
        chain_devices = list(
            session.scalars(select(Device).where(Device.licensee == licensee).order_by(Device.device_id))
        )
    by_key: dict[str, DeviceSummary] = {}
    for d in chain_devices:
        s = by_key.setdefault(
            d.address, DeviceSummary(d.address, None, d.territory, [], "active", registered_at=d.registered_at)
        )
        s.device_ids.append(int(d.device_id))
        s.territory = d.territory
        s.state = "revoked" if d.revoked else "active"
        s.revoked_at = d.revoked_at if d.revoked else None
    indexed = {int(d.device_id) for d in chain_devices}
    for row in reversed(rows):  # oldest first: the newest registration of a key wins
        s = by_key.setdefault(row.address, DeviceSummary(row.address, row.name, row.territory, [], "registering"))
        s.portal, s.name, s.territory = row, row.name, row.territory
        s.registered_at = s.registered_at or row.created_at
        register = statuses.get(row.register_action_id or -1)
        revoke = statuses.get(row.revoke_action_id or -1)
        if row.device_id is None:
            if not s.device_ids or s.state == "revoked":  # a (new) registration on its way, or failed
                s.state = "failed" if register == "failed" else "registering"
            continue
        if row.device_id not in indexed:  # confirmed on chain, not indexed yet
            s.device_ids = sorted({*s.device_ids, int(row.device_id)})
            s.state = "active"
        if revoke == "confirmed":
            s.state = "revoked"
        elif revoke in ACTION_WAITING and s.state == "active":
            s.state = "revoking"
    summaries = sorted(by_key.values(), key=lambda s: (s.name or "~", s.address))
    ids = {i: s for s in summaries for i in s.device_ids}
    batches = _batches(engine, ids, limit)
    for b in batches:
        s = ids[b.device_id]
        if b.waiting:
            s.pending_batches += 1
            s.pending_plays += b.plays
        elif b.state == CONFIRMED:
            s.charged_batches += 1
        else:
            s.skipped_batches += 1
        seen = b.received_at or b.to_time
        if s.last_seen is None or seen > s.last_seen:
            s.last_seen, s.last_nonce = seen, b.nonce
    return LicenseeView(summaries, batches)


def _batches(engine: Engine, ids: dict[int, DeviceSummary], limit: int) -> list[BatchRow]:
    """The newest batches of these device ids: the pending store, then what the index holds
    that the pending store does not (relayed by another relayer), newest first."""
    if not ids:
        return []
    out: dict[tuple[int, int], BatchRow] = {}
    pb = PendingBatch
    with session_scope(engine) as session:
        for r in session.scalars(select(pb).where(_device_filter(ids)).order_by(pb.id.desc()).limit(limit)):
            device_id = make_device_id(r.licensee_index, r.device_number)
            out[(device_id, int(r.nonce))] = BatchRow(
                ids[device_id].address,
                device_id,
                int(r.nonce),
                int(r.plays),
                r.status,
                r.reason,
                _ts(r.received_at),
                int(r.from_time),
                int(r.to_time),
                tx_hash=r.confirmed_tx_hash,
            )
        for p in session.scalars(
            select(PlayBatch).where(PlayBatch.device_id.in_(list(ids))).order_by(PlayBatch.id.desc()).limit(limit)
        ):
            key = (int(p.device_id), int(p.nonce))
            row = out.get(key)
            if row is None:
                out[key] = BatchRow(
                    ids[key[0]].address,
                    key[0],
                    key[1],
                    int(p.plays),
                    CONFIRMED,
                    None,
                    None,
                    int(p.from_time),
                    int(p.to_time),
                    charged=int(p.charged),
                    tx_hash=p.tx_hash,
                )
            else:
                row.charged = int(p.charged)
                row.state = CONFIRMED
        for k in session.scalars(
            select(BatchSkip).where(BatchSkip.device_id.in_(list(ids))).order_by(BatchSkip.id.desc()).limit(limit)
        ):
            key = (int(k.device_id), int(k.nonce))
            if key not in out:
                out[key] = BatchRow(ids[key[0]].address, key[0], key[1], 0, REJECTED, k.reason, None, 0, 0)
    return sorted(out.values(), key=lambda b: (b.received_at or b.to_time, b.nonce), reverse=True)


def _device_filter(device_ids: Iterable[int]) -> ColumnElement[bool]:
    """pending_batches rows of exactly these device ids (licensee index and device number)."""
    pb = PendingBatch
    return or_(
        *[
            and_(pb.licensee_index == li, pb.device_number == n)
            for li, n in (split_device_id(int(i)) for i in device_ids)
        ]
    )


def plays_by_work(engine: Engine, device_ids: Iterable[int], waiting: Iterable[BatchRow] = ()) -> list[WorkPlays]:
    """Plays of these devices by work: recorded on chain (licensed, charged) and still pending."""
    ids = [int(i) for i in device_ids]
    found: dict[int, WorkPlays] = {}
    if ids:
        with session_scope(engine) as session:
            rows = session.execute(
                select(
                    Play.work_id,
                    func.sum(Play.count),
                    func.sum(Play.count).filter(Play.licensed.is_(True)),
                    func.sum(Play.amount),
                )
                .where(Play.device_id.in_(ids))
                .group_by(Play.work_id)
            ).all()
            for work_id, plays, licensed, charged in rows:
                found[int(work_id)] = WorkPlays(
                    int(work_id), None, int(plays or 0), int(licensed or 0), int(charged or 0)
                )
            if any(b.device_id in ids for b in waiting):
                pb = PendingBatch
                for (entries,) in session.execute(
                    select(pb.entries).where(pb.status.in_((PENDING, INFLIGHT)), _device_filter(ids))
                ):
                    for work_id, count in decode_entries(bytes(entries)):
                        found.setdefault(work_id, WorkPlays(work_id, None)).pending += count
            titles = dict(session.execute(select(Work.work_id, Work.title).where(Work.work_id.in_(list(found)))).all())
        for w in found.values():
            w.title = titles.get(w.work_id)
    return sorted(found.values(), key=lambda w: w.work_id)


# ----------------------------------------------------------------------------- provisioning


def indexed_domain(engine: Engine) -> tuple[int, str] | None:
    """(chain id, ledger address) the index follows, when it has started."""
    with session_scope(engine) as session:
        row = session.scalars(select(IndexerCheckpoint).order_by(IndexerCheckpoint.id)).first()
        return (int(row.chain_id), to_checksum_address(row.ledger_address)) if row is not None else None


def provisioning(
    device: str,
    device_id: int | None,
    licensee: str,
    chain_id: int,
    ledger: str,
    transport: str,
    endpoint: str,
    mqtt_url: str,
    topic_prefix: str,
) -> dict[str, Any]:
    """The provisioning file of docs/devices.md, as scripts/device.py reads it."""
    if transport not in ("http", "mqtt"):
        raise UserError(f"transport is http or mqtt, not {transport!r}")
    return {
        "device": to_checksum_address(device),
        "deviceId": str(device_id or 0),
        "licensee": to_checksum_address(licensee),
        "transport": transport,
        "endpoint": endpoint,
        "mqttUrl": mqtt_url,
        "mqttTopicPrefix": topic_prefix,
        "chainId": chain_id,
        "ledger": to_checksum_address(ledger),
    }
