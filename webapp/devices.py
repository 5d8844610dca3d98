"""A licensee's devices: register (with the device key's proof), name, territory, revoke; per
device its batches (pending, charged, skipped with what to do), plays by work; the provisioning
file scripts/device.py reads. Registration and revocation are gasless actions (ledger.gasless).

A licensee sees its own devices only: every page reads ``ledger.devices.licensee_view`` for the
logged-in licensee, and a device that is not in it is a 404.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eth_utils import is_address, to_checksum_address
from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.routing import BuildError
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ledger import devices, gasless
from ledger.errors import LedgerError, UserError

from . import signing, views
from .auth import role_required
from .forms import ActionForm
from .runtime import RelayerUnavailable, engine, ledger_settings, portal_settings, relayer

bp = Blueprint("devices", __name__)
MAX_PROOF_FILE = 4096


class RegisterDeviceForm(FlaskForm):
    proof = TextAreaField("Proof of possession (the output of `device.py register-proof`)", validators=[Optional()])
    proof_file = FileField("… or upload the output of `device.py register-proof --json`")
    device = StringField("Device address (not needed with the --json output)", validators=[Optional(), Length(42, 42)])
    name = StringField("Name", validators=[DataRequired(), Length(1, devices.MAX_NAME)])
    territory = StringField("Territory (ISO 3166 country code)", validators=[DataRequired(), Length(2, 2)])
    submit = SubmitField("Register the device")


class RenameDeviceForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(1, devices.MAX_NAME)])
    submit = SubmitField("Rename")


def _view() -> devices.LicenseeView:
    statuses = {a.id: a.status for a in gasless.actions_of(engine(), g.user.id)}
    return devices.licensee_view(engine(), g.user.id, g.user.address, statuses)


def _own_device(view: devices.LicenseeView, address: str) -> devices.DeviceSummary:
    found = view.device(address) if is_address(address) else None
    if found is None:
        abort(404, description="no such device among yours")
    return found


def catalogue_url(work_id: int) -> str | None:
    """Where the licensee buys a license for a work (the licensee pages, when present)."""
    try:
        return url_for("licensee.catalogue_page", q=f"#{work_id}")
    except BuildError:
        return None


def licenses_url() -> str | None:
    try:
        return url_for("licensee.catalogue_page")
    except BuildError:
        return None


def escrow_url() -> str | None:
    try:
        return url_for("licensee.escrow")
    except BuildError:
        return None


@bp.get("/")
@role_required("licensee")
def index():
    view = _view()
    ids = [i for d in view.devices for i in d.device_ids]
    works = devices.plays_by_work(engine(), ids, view.waiting)
    return render_template(
        "devices/index.html",
        view=view,
        unlicensed=[w for w in works if w.unlicensed],
        pending=[
            a
            for a in gasless.actions_of(engine(), g.user.id, statuses=views.PENDING)
            if a.kind in gasless.DEVICE_ACTIONS
        ],
        action_form=ActionForm(),
        catalogue_url=catalogue_url,
        escrow_url=escrow_url(),
        licenses_url=licenses_url(),
    )


def _chain_context() -> tuple[int, str, object]:
    """(chain id, ledger address, LedgerClient) of this portal's deployment."""
    built = relayer()
    return built.deployment.chain_id, built.deployment.ledger.address, built.client


@bp.route("/register", methods=["GET", "POST"])
@role_required("licensee")
def register():
    form = RegisterDeviceForm()
    status = 200
    if form.validate_on_submit():
        done, status = _register(form)
        if done is not None:
            return redirect(url_for("devices.device", address=done))
    elif request.method == "POST":
        status = 400
    try:  # a new device has no provisioning file yet: register-proof needs the ledger and chain
        chain_id, ledger, _ = _chain_context()
        domain = f" --ledger {ledger} --chain-id {chain_id}"
    except RelayerUnavailable:
        domain = ""
    return render_template("devices/register.html", form=form, licensee=g.user.address, domain=domain), status


def _register(form: RegisterDeviceForm) -> tuple[str | None, int]:
    """Checks the form and the proof, queues and runs the registration: (the device address, 302),
    or (None, the page's status) with the errors put on the form."""
    try:
        territory = devices.territory_code(form.territory.data)
    except UserError as exc:
        form.territory.errors.append(str(exc))
        return None, 400
    text = form.proof.data or ""
    upload: Any = form.proof_file.data
    if upload is not None and upload.filename:
        raw = upload.read(MAX_PROOF_FILE + 1)
        if len(raw) > MAX_PROOF_FILE:
            form.proof_file.errors.append("the proof file is too large: upload the output of `register-proof --json`")
            return None, 400
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            form.proof_file.errors.append("the proof file is not text: upload the output of `register-proof --json`")
            return None, 400
    try:
        proof = devices.parse_proof(text)
    except devices.DeviceProofError as exc:
        form.proof.errors.append(str(exc))
        return None, 400
    try:
        chain_id, ledger, client = _chain_context()
        device = (form.device.data or proof.device or "").strip()
        if device and not is_address(device):
            form.device.errors.append(f"{device!r} is not a device address (0x and 40 hex digits)")
            return None, 400
        nonce = client.device_registration_nonce(device) if device else 0  # type: ignore[attr-defined]
        address = devices.check_proof(proof, device or None, g.user.address, chain_id, ledger, nonce)
        active = client.device_id_of(address)  # type: ignore[attr-defined]
        if active:
            _, owner, revoked_at, _ = client.device_info(active)  # type: ignore[attr-defined]
            if not revoked_at:
                whose = "you" if to_checksum_address(owner) == g.user.address else "another licensee"
                form.device.errors.append(
                    f"device {address} is registered already (by {whose}, device id {active}): "
                    "it must be revoked before it can be registered again"
                )
                return None, 400
    except devices.DeviceProofError as exc:
        form.proof.errors.append(str(exc))
        return None, 400
    except RelayerUnavailable as exc:
        form.proof.errors.append(f"the chain cannot be reached to check the proof: try again later ({exc})")
        return None, 503
    except LedgerError as exc:
        form.proof.errors.append(f"the chain cannot be read: {exc}")
        return None, 400
    row = devices.add_device(engine(), g.user.id, address, form.name.data, territory, chain_id, ledger)
    action = gasless.queue_action(
        engine(),
        g.user.id,
        "register_device",
        {"device": address, "territory": territory, "signature": "0x" + proof.signature.hex(), "name": row.name},
    )
    devices.update_device(engine(), row.id, register_action_id=action.id)
    views.run_action(action)
    _record_device_id(row.id, address)
    return address, 302


def _record_device_id(row_id: int, address: str) -> None:
    """Stores the on-chain id of a device whose registration was confirmed just now."""
    row = next((r for r in devices.portal_rows(engine(), g.user.id, address) if r.id == row_id), None)
    if row is None or row.device_id is not None or row.register_action_id is None:
        return
    action = gasless.get_action(engine(), row.register_action_id)
    if action is None or action.status != "confirmed":
        return
    try:
        device_id = relayer().client.device_id_of(address)
    except (RelayerUnavailable, LedgerError):
        return
    if device_id:
        devices.update_device(engine(), row_id, device_id=int(device_id))


@bp.get("/<address>")
@role_required("licensee")
def device(address: str):
    view = _view()
    found = _own_device(view, address)
    if found.portal is not None and found.portal.device_id is None:
        _record_device_id(found.portal.id, found.address)
    batches = view.batches_of(found.address)
    return render_template(
        "devices/device.html",
        d=found,
        batches=batches,
        waiting=[b for b in batches if b.waiting],
        skipped=[b for b in batches if b in view.skipped],
        works=devices.plays_by_work(engine(), found.device_ids, batches),
        action_form=ActionForm(),
        rename_form=RenameDeviceForm(data={"name": found.name or ""}),
        catalogue_url=catalogue_url,
        escrow_url=escrow_url(),
        licenses_url=licenses_url(),
        territory_name=devices.territory_name,
    )


@bp.post("/<address>/name")
@role_required("licensee")
def rename(address: str):
    """Renames a device (off chain only: the name is the portal's, the chain never sees it)."""
    found = _own_device(_view(), address)
    form = RenameDeviceForm()
    if not form.validate_on_submit():
        abort(400, description="give a name of 1 to 80 characters")
    if found.portal is not None:
        devices.update_device(engine(), found.portal.id, name=form.name.data.strip())
    else:  # registered outside the portal: the name gets a row of its own
        domain = devices.indexed_domain(engine())
        if domain is None or not found.territory:
            abort(409, description="this device is not indexed yet: try again in a minute")
        row = devices.add_device(engine(), g.user.id, found.address, form.name.data, found.territory, *domain)
        devices.update_device(engine(), row.id, device_id=found.device_ids[-1])
    return redirect(url_for("devices.device", address=found.address))


@bp.post("/<address>/revoke")
@role_required("licensee")
def revoke(address: str):
    found = _own_device(_view(), address)
    if not ActionForm().validate_on_submit():
        abort(400, description="the form was not sent by this site or has expired")
    if found.state != "active" or found.active_id is None:
        abort(409, description=f"this device is {found.state}: only an active device can be revoked")
    action = gasless.queue_action(
        engine(), g.user.id, "revoke_device", {"device_id": found.active_id, "device": found.address}
    )
    if found.portal is not None:
        devices.update_device(engine(), found.portal.id, revoke_action_id=action.id)
    else:  # registered outside the portal: keep the revocation with a row of its own
        domain = devices.indexed_domain(engine())
        if domain is not None and found.territory:
            row = devices.add_device(engine(), g.user.id, found.address, found.address[:10], found.territory, *domain)
            devices.update_device(engine(), row.id, device_id=found.active_id, revoke_action_id=action.id)
    views.run_action(action)
    return redirect(url_for("devices.device", address=found.address))


def _public_mqtt_url() -> str:
    portal = portal_settings()
    if portal.public_mqtt_url:
        return portal.public_mqtt_url
    parts = urlsplit(ledger_settings().mqtt_url)  # the server's own credentials stay on the server
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def _endpoint() -> str:
    base = portal_settings().public_url or request.url_root.rstrip("/")
    return base + url_for("api_v1.submit_batch")


@bp.get("/<address>/provisioning.json")
@role_required("licensee")
def provisioning(address: str):
    found = _own_device(_view(), address)
    transport = request.args.get("transport", "http")
    if transport not in ("http", "mqtt"):
        abort(400, description="transport is http or mqtt")
    if found.state not in ("active", "revoking") or found.active_id is None:
        abort(
            409,
            description=f"this device is {found.state}: its provisioning file is ready once its registration is "
            "confirmed (a device that reported before would see its batches refused)",
        )
    domain = (found.portal.chain_id, found.portal.ledger) if found.portal is not None else None
    domain = domain or devices.indexed_domain(engine())
    if domain is None:
        try:
            chain_id, ledger, _ = _chain_context()
            domain = (chain_id, ledger)
        except RelayerUnavailable as exc:
            abort(503, description=f"the chain cannot be reached: {exc}")
    doc = devices.provisioning(
        found.address,
        found.active_id,
        g.user.address,
        domain[0],
        domain[1],
        transport,
        _endpoint(),
        _public_mqtt_url(),
        ledger_settings().mqtt_topic_prefix,
    )
    name = f"provisioning-{found.address[:10].lower()}-{transport}.json"
    return Response(
        json.dumps(doc, indent=2) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# ----------------------------------------------------------------------------- wallet signatures


def _own_action(action_id: int):
    return signing.own_action(action_id, gasless.DEVICE_ACTIONS, what="device action")


@bp.get("/actions/<int:action_id>/typed-data")
@role_required("licensee")
def typed_data(action_id: int):
    """The EIP-712 ForwardRequest of a wallet user's device action (eth_signTypedData_v4)."""
    return signing.typed_data_response(_own_action(action_id))


def _after_signature(done: gasless.PortalAction) -> None:
    """A registration confirmed just now: its device row gets the on-chain id."""
    if done.status == "confirmed" and done.kind == "register_device":
        row = next(
            (r for r in devices.portal_rows(engine(), g.user.id) if r.register_action_id == done.id),
            None,
        )
        if row is not None:
            _record_device_id(row.id, row.address)


@bp.post("/actions/<int:action_id>/signature")
@role_required("licensee")
def signature(action_id: int):
    return signing.submit_signature(_own_action(action_id), after=_after_signature)
