"""What the views use from `ledger`, made once per app: the engine, the settings, the relayer.

Tests hand an engine over as ``LEDGER_ENGINE``; otherwise it comes from LEDGER_DATABASE_URL.
"""

from __future__ import annotations

import threading

from flask import current_app, g

from ledger.config import Settings

from .settings import PortalSettings

_lock = threading.Lock()


def ledger_settings() -> Settings:
    settings = current_app.config.get("LEDGER_SETTINGS")
    if settings is None:
        settings = current_app.config["LEDGER_SETTINGS"] = Settings.from_env()
    return settings


def portal_settings() -> PortalSettings:
    return current_app.config["PORTAL_SETTINGS"]


def engine():
    eng = current_app.config.get("LEDGER_ENGINE")
    if eng is None:
        with _lock:
            eng = current_app.config.get("LEDGER_ENGINE")
            if eng is None:
                from ledger.db import make_engine

                eng = current_app.config["LEDGER_ENGINE"] = make_engine(ledger_settings().database_url)
    return eng


class RelayerUnavailable(Exception):
    """No chain, no deployment or no forwarder: on-chain actions stay queued."""


def relayer():
    """The app's GaslessRelayer, built on first use; RelayerUnavailable (with a reason a user may
    read) when the chain, the deployment or the forwarder is missing. Retried on the next call."""
    found = current_app.config.get("GASLESS_RELAYER")
    if found is not None:
        return found
    from ledger.chain import connect, load_deployment, resolve_account
    from ledger.errors import LedgerError
    from ledger.gasless import GaslessRelayer

    settings, portal = ledger_settings(), portal_settings()
    if not portal.relayer_key and portal.production:
        raise RelayerUnavailable("LEDGER_GASLESS_KEY is not set")
    try:
        w3 = connect(settings.rpc_url, timeout=30)
        deployment = load_deployment(w3, settings.deployment_file(w3.eth.chain_id))
        if portal.relayer_key:
            account = resolve_account(w3, portal.relayer_key)
        else:  # devnet: the node's second account (the first one relays play batches)
            unlocked = w3.eth.accounts
            if len(unlocked) < 2:
                raise RelayerUnavailable("set LEDGER_GASLESS_KEY: the node has no second unlocked account")
            account = unlocked[1]
        built = GaslessRelayer(
            w3, deployment, account, engine(), portal.gas_budget, forwarder_address=portal.forwarder_address
        )
    except LedgerError as exc:
        raise RelayerUnavailable(str(exc)) from None
    current_app.config["GASLESS_RELAYER"] = built
    return built


def current_user():
    return g.get("user")
