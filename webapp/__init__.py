"""Flask application: the JSON API (and, later, the portal) on top of the `ledger` library.

Views call `ledger`; nothing here writes web3 calls or SQL by hand.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory. `config` may carry LEDGER_SETTINGS (a ledger.config.Settings) and
    INGEST_CONTEXT (a ledger.ingest.IngestContext) for tests; otherwise both come from the
    LEDGER_* environment variables on first use."""
    app = Flask(__name__)
    app.config.from_mapping(JSON_SORT_KEYS=False)
    if config:
        app.config.update(config)

    from .api import bp as api_v1

    app.register_blueprint(api_v1, url_prefix="/api/v1")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # never a traceback to the client
        log.exception("unhandled error")
        return jsonify(error={"code": "internal_error", "message": "internal error"}), 500

    return app
