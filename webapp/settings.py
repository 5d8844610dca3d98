"""Portal settings, from LEDGER_* variables (the ledger's own come from ledger.config.Settings).

=============================  =========================================================
``LEDGER_ENV``                 ``devnet`` (default) or ``production``
``LEDGER_SECRET_KEY``          server secret: signs sessions, derives the key that encrypts
                               custodial keys. Required in production; on the devnet one is
                               generated once and kept in ``var/secret_key`` (mode 0600)
``LEDGER_GASLESS_KEY``         key that pays for users' gasless actions (forwarder
                               ``execute``). Keep it apart from LEDGER_RELAYER_KEY (play batches):
                               two senders on one key fight over nonces. Required in production;
                               on a devnet the node's second unlocked account
``LEDGER_FORWARDER_ADDRESS``   ERC2771Forwarder (default: ``TrustedForwarder`` of the deployment)
``LEDGER_GAS_BUDGET``          gas per user per UTC day the relayer pays (default 3,000,000)
``LEDGER_K_ANONYMITY``         devices a territory-period cell needs to be shown (default 3)
``LEDGER_RATE_LOGIN``          log-in attempts per client address (default ``10 per minute``)
``LEDGER_RATE_SIGNUP``         sign-ups per client address (default ``5 per hour``)
``LEDGER_RATE_TOKEN``          API requests per token (default ``120 per minute``)
``LEDGER_RATELIMIT_STORAGE``   Flask-Limiter storage URI (default ``memory://``: per process)
=============================  =========================================================
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ledger.config import ConfigError


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = (env.get(name) or "").strip().replace(",", "").replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, not {env.get(name)!r}")
    return int(raw)

SECRET_FILE = Path("var") / "secret_key"


def devnet_secret(path: Path = SECRET_FILE) -> str:
    """The devnet's secret: read from `path`, generated there once (atomically, 0600) if absent."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


@dataclass(frozen=True)
class PortalSettings:
    env: str = "devnet"
    secret_key: str = field(default="", repr=False)
    relayer_key: str | None = field(default=None, repr=False)
    forwarder_address: str | None = None
    gas_budget: int = 3_000_000
    k_anonymity: int = 3
    rate_login: str = "10 per minute"
    rate_signup: str = "5 per hour"
    rate_token: str = "120 per minute"
    ratelimit_storage: str = "memory://"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, secret_file: Path = SECRET_FILE) -> PortalSettings:
        env = os.environ if env is None else env
        mode = (env.get("LEDGER_ENV") or "devnet").strip().lower()
        if mode not in ("devnet", "production"):
            raise ConfigError(f"LEDGER_ENV must be devnet or production, not {mode!r}")
        secret = env.get("LEDGER_SECRET_KEY") or ""
        if not secret:
            if mode == "production":
                raise ConfigError("LEDGER_SECRET_KEY must be set in production (32 random bytes or more)")
            secret = devnet_secret(secret_file)
        if len(secret) < 32:
            raise ConfigError("LEDGER_SECRET_KEY must have at least 32 characters")
        return cls(env=mode, secret_key=secret,
                   relayer_key=env.get("LEDGER_GASLESS_KEY") or None,
                   forwarder_address=env.get("LEDGER_FORWARDER_ADDRESS") or None,
                   gas_budget=_int(env, "LEDGER_GAS_BUDGET", 3_000_000, minimum=0),
                   k_anonymity=_int(env, "LEDGER_K_ANONYMITY", 3, minimum=1),
                   rate_login=env.get("LEDGER_RATE_LOGIN") or cls.rate_login,
                   rate_signup=env.get("LEDGER_RATE_SIGNUP") or cls.rate_signup,
                   rate_token=env.get("LEDGER_RATE_TOKEN") or cls.rate_token,
                   ratelimit_storage=env.get("LEDGER_RATELIMIT_STORAGE") or cls.ratelimit_storage)
