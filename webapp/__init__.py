"""Flask application: the portal (artists, labels) and the JSON API on top of the `ledger` library.

Views call `ledger`; nothing here writes web3 calls or SQL by hand. See docs/portal.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, abort, g, jsonify, render_template, request, send_file
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from ledger.identifiers import format_isrc

from .money import usd

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
#: Front-end packages from npm (package.json), served by the app itself: no CDN.
VENDOR = {
    "pico.min.css": ("@picocss/pico/css/pico.min.css", "text/css"),
    "chart.umd.js": ("chart.js/dist/chart.umd.js", "text/javascript"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory. `config` may carry LEDGER_SETTINGS (ledger.config.Settings),
    PORTAL_SETTINGS (webapp.settings.PortalSettings), LEDGER_ENGINE and INGEST_CONTEXT for tests;
    otherwise all come from the LEDGER_* environment variables."""
    from .settings import PortalSettings

    app = Flask(__name__)
    app.config.from_mapping(JSON_SORT_KEYS=False, NODE_MODULES=str(ROOT / "node_modules"))
    if config:
        app.config.update(config)
    portal = app.config.get("PORTAL_SETTINGS") or PortalSettings.from_env()
    app.config["PORTAL_SETTINGS"] = portal
    app.config.update(
        SECRET_KEY=portal.secret_key,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="ledger_session",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        WTF_CSRF_TIME_LIMIT=12 * 3600,
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
    )

    csrf = CSRFProtect(app)
    limiter = Limiter(
        get_remote_address, app=app, storage_uri=portal.ratelimit_storage, default_limits=[], headers_enabled=True
    )
    app.extensions["portal_limiter"] = limiter

    from . import api, artist, auth, devices, label, licensee

    csrf.exempt(api.bp)  # token or session auth, read-only except the device ingest (signed batches)
    limiter.limit(
        portal.rate_token,
        key_func=api.token_rate_key,
        exempt_when=api.no_token,
        error_message="too many requests with this token",
    )(api.bp)
    app.register_blueprint(api.bp, url_prefix="/api/v1")
    app.register_blueprint(auth.bp)
    app.register_blueprint(artist.bp, url_prefix="/artist")
    app.register_blueprint(label.bp, url_prefix="/label")
    app.register_blueprint(licensee.bp, url_prefix="/licensee")
    app.register_blueprint(devices.bp, url_prefix="/licensee/devices")
    for endpoint, rate, message in (
        ("auth.login", portal.rate_login, "too many log-in attempts"),
        ("auth.siwe_verify", portal.rate_login, "too many log-in attempts"),
        ("auth.signup", portal.rate_signup, "too many sign-ups"),
    ):
        app.view_functions[endpoint] = limiter.limit(  # type: ignore[assignment]  # a sync view stays sync
            rate, methods=["POST"], error_message=message
        )(app.view_functions[endpoint])

    app.jinja_env.filters["usd"] = usd
    app.jinja_env.filters["isrc"] = lambda v: format_isrc(v) if v else "—"
    app.jinja_env.filters["datetime"] = lambda ts: (
        datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "—"
    )
    app.before_request(auth.load_user)

    @app.context_processor
    def globals_():
        return {"user": g.get("user")}

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.get("/vendor/<name>")
    def vendor(name: str):
        if name not in VENDOR:
            abort(404)
        relative, mimetype = VENDOR[name]
        path = Path(app.config["NODE_MODULES"]) / relative
        if not path.is_file():
            abort(404, description=f"{name} is not installed: run `make install`")
        return send_file(path, mimetype=mimetype, max_age=3600)

    @app.after_request
    def security_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if portal.production:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.path.startswith(("/artist", "/label", "/licensee", "/account", "/api/v1")):
            h.setdefault("Cache-Control", "no-store")
        return response

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if wants_json():
            return jsonify(error={"code": "csrf_failed", "message": exc.description}), 400
        return render_template(
            "error.html",
            code=400,
            title="Form not accepted",
            message="This form was not sent by this site or has expired: reload the page and send it again.",
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 429:
            code = "rate_limited"
        if wants_json() or request.accept_mimetypes.best == "application/json":
            response = jsonify(error={"code": code, "message": exc.description})
        else:
            response = app.make_response(
                render_template("error.html", code=exc.code, title=exc.name, message=exc.description)
            )
        response.status_code = exc.code or 500
        for name, value in exc.get_headers():  # e.g. Allow on a 405, Retry-After on a 429
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # never a traceback to the client
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify(error={"code": "internal_error", "message": "internal error"}), 500
        return render_template(
            "error.html", code=500, title="Something went wrong", message="The error was logged; please try again."
        ), 500

    return app
