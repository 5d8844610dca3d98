"""/api/v1: the versioned JSON API. Errors are {"error": {"code", "message"}} with a 4xx status."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

OPENAPI = Path(__file__).with_name("openapi.yaml")

bp = Blueprint("api_v1", __name__)
_lock = threading.Lock()


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
                ctx = IngestContext.create(rt.w3, rt.deployment, rt.engine)
                current_app.config["INGEST_CONTEXT"] = ctx
    return ctx


@bp.get("/openapi.yaml")
def openapi():
    """The OpenAPI document of this API."""
    return Response(OPENAPI.read_text(), mimetype="application/yaml")


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.post("/batches")
def submit_batch():
    """A device's signed play batch (docs/devices.md): 202 once stored as pending."""
    from ledger.ingest import handle_json

    try:
        ctx = _ingest_context()
    except Exception as exc:  # noqa: BLE001 - chain, deployment or database not reachable: the device retries
        current_app.logger.warning("ingest unavailable: %s", exc)
        return jsonify(error={"code": "unavailable", "message": "the ledger is not reachable; retry later"}), 503
    status, body = handle_json(request.get_data(), ctx)
    return Response(json.dumps(body), status=status, mimetype="application/json")
