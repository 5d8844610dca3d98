"""Helpers of the portal tests (a module with its own name, so test modules never import a
`conftest` that another suite's conftest may shadow)."""
from __future__ import annotations

import re

from ledger.config import Settings
from webapp import create_app
from webapp.settings import PortalSettings

PASSWORD = "correct horse battery"
SECRET = "test-secret-" + "x" * 40


def make_app(engine, **portal):
    settings = Settings.from_env().with_(rpc_url="http://127.0.0.1:9", database_url=str(engine.url))
    defaults = dict(secret_key=SECRET, rate_login="1000 per minute", rate_signup="1000 per minute",
                    rate_token="1000 per minute")
    defaults.update(portal)
    return create_app({"TESTING": True, "LEDGER_SETTINGS": settings, "LEDGER_ENGINE": engine,
                       "PORTAL_SETTINGS": PortalSettings(**defaults)})


def csrf_of(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text) or \
        re.search(r'name="csrf-token" content="([^"]+)"', text)
    assert m, "no CSRF token on the page"
    return m.group(1)


class Portal:
    """Drives the portal like a browser: reads each form's CSRF token before posting it."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post_form(self, path, data, form_page=None):
        token = csrf_of(self.client.get(form_page or path).data)
        return self.client.post(path, data={**data, "csrf_token": token})

    def login(self, username, password=PASSWORD):
        return self.post_form("/login", {"username": username, "password": password})
