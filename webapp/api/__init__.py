"""/api/v1: the versioned JSON API. Errors are {"error": {"code", "message"}} with a 4xx status.

Authentication: ``Authorization: Bearer lt_...`` (a read-only API token) or the portal's session
cookie. A caller sees the works it owns and those where it is (or was) a payee, nothing else:
any other work is a 404, as if it did not exist. The device ingest (POST /batches) is
authenticated by the batch's own EIP-712 signature instead.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # no PyYAML stubs in the environment
from flask import Blueprint, Response, abort, current_app, g, jsonify, request

from ledger import accounts, analytics
from ledger.statements import statement

from ..runtime import engine, portal_settings
from ..views import period_from_args

OPENAPI = Path(__file__).with_name("openapi.yaml")
MAX_PER_PAGE = 100

bp = Blueprint("api_v1", __name__)
_lock = threading.Lock()


def _error(status: int, code: str, message: str):
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def no_token() -> bool:
    return _bearer() is None


def token_rate_key() -> str:
    return "token:" + accounts.hash_token(_bearer() or "")


def api_auth(view):
    """The caller (token or session) on g.api_user; 401 JSON without one, 403 for a token
    that tries anything but reading."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        token = _bearer()
        if token is not None:
            found = accounts.user_for_token(engine(), token)
            if found is None:
                return _error(401, "bad_token", "the API token is unknown or revoked")
            if request.method not in ("GET", "HEAD"):
                return _error(403, "read_only_token", "API tokens are read-only")
            g.api_user = found[0]
        elif g.get("user") is not None:
            g.api_user = g.user
        else:
            return _error(
                401, "unauthenticated", "send an API token (Authorization: Bearer lt_...) or log in to the portal"
            )
        return view(*args, **kwargs)

    return wrapped


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        abort(400, description=f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def _visible(work_id: int) -> None:
    if work_id not in analytics.visible_work_ids(engine(), g.api_user.address):
        abort(404, description=f"no work {work_id} among yours")


def _work_json(info) -> dict:
    history = analytics.split_history(engine(), info.work_id)
    return {
        "workId": info.work_id,
        "title": info.title,
        "isrc": info.isrc,
        "iswc": info.iswc,
        "owner": info.owner,
        "plays": info.plays,
        "licensedPlays": info.licensed_plays,
        "accrued": str(info.accrued),
        "distributed": str(info.distributed),
        "split": [{"payee": p, "bps": b} for p, b in (history[-1].shares if history else [])],
        "terms": {k: {**v, "fee": str(v["fee"])} for k, v in analytics.current_terms(engine(), info.work_id).items()},
    }


# ----------------------------------------------------------------------------- documents, health


def openapi_document() -> dict:
    return yaml.safe_load(OPENAPI.read_text())


@bp.get("/openapi.yaml")
def openapi():
    """The OpenAPI document of this API (YAML)."""
    return Response(OPENAPI.read_text(), mimetype="application/yaml")


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3 document of this API (JSON)."""
    return jsonify(openapi_document())


@bp.get("/health")
def health():
    """Whether the ledger can make progress (ledger.health): the node, the database, the
    indexer's lag and the relayer's backlog; 503 when it cannot."""
    from ledger.health import check_settings

    from ..runtime import engine, ledger_settings

    report = check_settings(ledger_settings(), engine())
    return jsonify(report.to_dict()), (200 if report.ok else 503)


# ----------------------------------------------------------------------------- works, plays


@bp.get("/works")
@api_auth
def works():
    page = _int_arg("page", 1, 1, 10**9)
    per_page = _int_arg("per_page", 50, 1, MAX_PER_PAGE)
    ids = analytics.visible_work_ids(engine(), g.api_user.address)
    chunk = ids[(page - 1) * per_page : page * per_page]
    items = [_work_json(w) for w in analytics.works_by_id(engine(), chunk)]
    return jsonify(
        items=items,
        page=page,
        perPage=per_page,
        total=len(ids),
        nextPage=page + 1 if page * per_page < len(ids) else None,
    )


@bp.get("/works/<int:work_id>")
@api_auth
def work(work_id: int):
    _visible(work_id)
    return jsonify(_work_json(analytics.work(engine(), work_id)))


@bp.get("/works/<int:work_id>/plays")
@api_auth
def plays(work_id: int):
    _visible(work_id)
    granularity = request.args.get("granularity", "month")
    if granularity not in ("day", "month"):
        abort(400, description="granularity is day or month")
    period = period_from_args()
    k = portal_settings().k_anonymity
    series = analytics.plays_over_time(engine(), [work_id], granularity, period.first, period.last)
    report = analytics.plays_by_territory(engine(), [work_id], k, period.first, period.last)
    return jsonify(
        workId=work_id,
        period=period.label,
        granularity=granularity,
        k=k,
        byTime=[
            {"bucket": p.bucket, "plays": p.plays, "licensedPlays": p.licensed_plays, "earnings": str(p.earnings)}
            for p in series
        ],
        byTerritory=[
            {
                "period": c.period,
                "territory": c.territory,
                "plays": c.plays,
                "licensedPlays": c.licensed_plays,
                "earnings": str(c.earnings),
            }
            for c in report.cells
        ],
        licenseFees=str(report.license_fees),
    )


# ----------------------------------------------------------------------------- money


@bp.get("/statements")
@api_auth
def statements():
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        abort(400, description="format is json or csv")
    st = statement(engine(), g.api_user.address, period_from_args())
    if fmt == "csv":
        return Response(st.to_csv(), mimetype="text/csv")
    return Response(st.to_json(), mimetype="application/json")


@bp.get("/balances")
@api_auth
def balances():
    b = analytics.balance(engine(), g.api_user.address)
    return jsonify(address=b.address, credited=str(b.credited), withdrawn=str(b.withdrawn), available=str(b.available))


# ----------------------------------------------------------------------------- device ingest


def _ingest_context():
    """The ingest context of this app: built once from the LEDGER_* settings."""
    ctx = current_app.config.get("INGEST_CONTEXT")
    if ctx is None:
        with _lock:
            ctx = current_app.config.get("INGEST_CONTEXT")
            if ctx is None:
                from ledger.ingest import IngestContext
                from ledger.runtime import open_runtime

                rt = open_runtime(current_app.config.get("LEDGER_SETTINGS"))
                ctx = IngestContext.create(rt.w3, rt.deployment, rt.engine, max_unsettled=rt.settings.device_backlog)
                current_app.config["INGEST_CONTEXT"] = ctx
    return ctx


@bp.post("/batches")
def submit_batch():
    """A device's signed play batch (docs/devices.md): 202 once stored as pending."""
    from ledger.ingest import handle_json

    try:
        ctx = _ingest_context()
    except Exception as exc:  # noqa: BLE001 - chain, deployment or database not reachable: the device retries
        current_app.logger.warning("ingest unavailable: %s", exc)
        return _error(503, "unavailable", "the ledger is not reachable; retry later")
    if request.content_length is not None and request.content_length > ctx.max_body_bytes:
        # refused before a byte of the body is read (a device never needs more)
        return _error(
            413, "payload_too_large", f"the body is {request.content_length} bytes; at most {ctx.max_body_bytes}"
        )
    status, body = handle_json(request.get_data(), ctx)
    return Response(json.dumps(body), status=status, mimetype="application/json")
