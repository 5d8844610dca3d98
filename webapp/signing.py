"""Wallet signatures of a user's on-chain actions, shared by the artist, licensee and device pages.

A wallet user's action waits as ``awaiting_signature``: the page fetches the EIP-712
ForwardRequest (``actions/<id>/typed-data``), the wallet signs it (eth_signTypedData_v4) and the
page posts the 65-byte signature (``actions/<id>/signature``), which the relayer checks and sends.
Each blueprint keeps its own routes and role, and says which kinds of action are its own; the
device pages add a hook after a confirmed action (the new device's on-chain id).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from flask import abort, g, jsonify, request

from ledger import gasless
from ledger.errors import LedgerError

from .runtime import RelayerUnavailable, engine, portal_settings, relayer

SIGNATURE_BYTES = 65


def error(code: str, message: str, status: int):
    """A JSON error answer {error: {code, message}} with its status."""
    return jsonify(error={"code": code, "message": message}), status


def own_action(action_id: int, kinds: Collection[str] | None = None, what: str = "action") -> gasless.PortalAction:
    """The signed-in user's action of one of ``kinds`` (any kind when None), else 404."""
    action = gasless.get_action(engine(), action_id)
    if action is None or action.user_id != g.user.id or (kinds is not None and action.kind not in kinds):
        abort(404, description=f"no such {what} among yours")
    return action


def typed_data_response(action: gasless.PortalAction):
    """The EIP-712 ForwardRequest a wallet signs (eth_signTypedData_v4): 409 when the action is
    not waiting for a signature or cannot be built, 503 without a chain."""
    if action.status != "awaiting_signature":
        abort(409, description="this action is not waiting for a signature")
    try:
        built = relayer()
        return jsonify(built.prepare_signature(action, g.user).typed_data(built.domain()))
    except RelayerUnavailable as exc:
        abort(503, description=str(exc))
    except LedgerError as exc:
        abort(409, description=str(exc))


def read_signature() -> bytes | None:
    """The posted JSON's ``signature`` (65 bytes of 0x-hex), or None when it is not one."""
    body = request.get_json(silent=True) or {}
    raw = body.get("signature") if isinstance(body, dict) else None
    try:
        sig = bytes.fromhex(str(raw).removeprefix("0x"))
    except ValueError:
        return None
    return sig if len(sig) == SIGNATURE_BYTES else None


def bad_signature():
    return error("bad_signature", "signature is 65 bytes of 0x-hex", 400)


def submit_signature(action: gasless.PortalAction, after: Callable[[gasless.PortalAction], None] | None = None):
    """Sends the action with the posted wallet signature; ``after`` runs on the action as the
    relayer left it. The answer: {status, tx_hash}, or a JSON error (400 refused or malformed,
    503 without a chain)."""
    sig = read_signature()
    if sig is None:
        return bad_signature()
    try:
        done = relayer().submit_signed(action, g.user, sig, portal_settings().secret_key)
    except RelayerUnavailable as exc:
        return error("unavailable", str(exc), 503)
    except LedgerError as exc:
        return error("refused", str(exc), 400)
    if after is not None:
        after(done)
    return jsonify(status=done.status, tx_hash=done.tx_hash)
