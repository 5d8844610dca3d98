"""Settings of the ledger, read from the environment.

=========================  ==============================================================
``LEDGER_RPC_URL``         JSON-RPC endpoint (default ``http://127.0.0.1:8545``, Anvil)
``LEDGER_DATABASE_URL``    SQLAlchemy URL (default SQLite file ``var/ledger.sqlite3``)
``LEDGER_DEPLOYMENTS``     deployments file, or folder of ``<chainId>.json`` files
                           (default ``deployments/``)
``LEDGER_CONFIRMATIONS``   blocks the indexer waits before reading a block (default 0)
``LEDGER_BLOCK_RANGE``     blocks per indexer range, one SQL transaction each (default 2000)
``LEDGER_REORG_DEPTH``     blocks below its checkpoint the indexer searches for the common
                           ancestor of a reorg, keeping their hashes (default 1,024); a deeper
                           reorg or reset rebuilds the index from the deploy block
``LEDGER_PRIVATE_KEY``     key that signs transactions (default: the node's first unlocked
                           account, which only a devnet has)
``LEDGER_TOKEN_ADDRESS``   settlement token for ``ledger deploy`` (default: deploy the test
                           stablecoin, devnet only)
``LEDGER_BUILD_DIR``       compiled contract artifacts (default ``build/contracts``)
``LEDGER_RELAYER_KEY``     key of ``ledger relay`` (default: ``LEDGER_PRIVATE_KEY``); one
                           relayer process per key
``LEDGER_UNLICENSED_PLAYS_PER_DAY`` plays of batches that pay nobody (no entry licensed) that
                           ``ledger relay`` sends per licensee per UTC day (default 5,000); more
                           wait, pending, until a license covers them or the next day
``LEDGER_DEVICE_BACKLOG``  batches a device may have stored and not yet settled on chain
                           (default 1,000; 0: no limit); more are answered 429
                           ``device_backlog_full`` (over MQTT: that error ack), nothing stored
``LEDGER_MQTT_URL``        broker of ``ledger ingest-mqtt`` (default
                           ``mqtt://127.0.0.1:1883``; ``mqtts://user:pass@host`` for TLS)
``LEDGER_MQTT_TOPIC_PREFIX`` first topic level of device batches (default ``plays``:
                           ``plays/<device>`` and ``plays/<device>/ack``)
``LEDGER_LOG_LEVEL``       DEBUG, INFO, WARNING (default) or ERROR; ``--log-level`` wins
=========================  ==============================================================

The portal's (:class:`PortalSettings`, read by ``webapp``):

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
``LEDGER_PUBLIC_URL``          the portal's URL as devices reach it, for provisioning files
                               (default: the URL of the request that downloads the file)
``LEDGER_PUBLIC_MQTT_URL``     the broker's URL as devices reach it (default: LEDGER_MQTT_URL
                               without its user and password)

docs/ledger.md carries the same table for users; a test checks that every ``LEDGER_*`` name in
the package is read here.

Relative paths are relative to the working directory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_RPC_URL = "http://127.0.0.1:8545"
DEFAULT_DATABASE_PATH = Path("var") / "ledger.sqlite3"
DEFAULT_DEPLOYMENTS = Path("deployments")
DEFAULT_BUILD_DIR = Path("build") / "contracts"
DEFAULT_BLOCK_RANGE = 2000
DEFAULT_REORG_DEPTH = 1024
DEFAULT_DEVICE_BACKLOG = 1_000
DEFAULT_UNLICENSED_PLAYS_PER_DAY = 5_000
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_MQTT_TOPIC_PREFIX = "plays"
DEFAULT_LOG_LEVEL = "WARNING"
DEFAULT_GAS_CAP = 14_000_000  # largest gas of one relayer transaction (`ledger relay --gas-cap`)
MAX_TX_BYTES = 131_072  # a default geth node refuses larger transactions into its mempool


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _topic_prefix(raw: str) -> str:
    prefix = raw.strip().strip("/")
    if not prefix or any(c in prefix for c in "+#") or len(prefix) > 200:
        raise ConfigError(f"LEDGER_MQTT_TOPIC_PREFIX must be a topic without wildcards, not {raw!r}")
    return prefix


def _log_level(raw: str, name: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return level


def default_database_url(base: Path | None = None) -> str:
    path = (base or Path.cwd()) / DEFAULT_DATABASE_PATH
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    rpc_url: str = DEFAULT_RPC_URL
    database_url: str = field(default_factory=default_database_url)
    deployments: Path = DEFAULT_DEPLOYMENTS
    confirmations: int = 0
    block_range: int = DEFAULT_BLOCK_RANGE
    reorg_depth: int = DEFAULT_REORG_DEPTH
    private_key: str | None = field(default=None, repr=False)
    token_address: str | None = None
    build_dir: Path = DEFAULT_BUILD_DIR
    relayer_key: str | None = field(default=None, repr=False)
    unlicensed_plays_per_day: int = DEFAULT_UNLICENSED_PLAYS_PER_DAY
    device_backlog: int = DEFAULT_DEVICE_BACKLOG
    mqtt_url: str = field(default=DEFAULT_MQTT_URL, repr=False)  # may carry a password
    mqtt_topic_prefix: str = DEFAULT_MQTT_TOPIC_PREFIX
    log_level: str = DEFAULT_LOG_LEVEL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            rpc_url=env.get("LEDGER_RPC_URL") or DEFAULT_RPC_URL,
            database_url=env.get("LEDGER_DATABASE_URL") or default_database_url(),
            deployments=Path(env.get("LEDGER_DEPLOYMENTS") or DEFAULT_DEPLOYMENTS),
            confirmations=_int(env, "LEDGER_CONFIRMATIONS", 0),
            block_range=_int(env, "LEDGER_BLOCK_RANGE", DEFAULT_BLOCK_RANGE, minimum=1),
            reorg_depth=_count(env, "LEDGER_REORG_DEPTH", DEFAULT_REORG_DEPTH, minimum=1),
            private_key=env.get("LEDGER_PRIVATE_KEY") or None,
            token_address=env.get("LEDGER_TOKEN_ADDRESS") or None,
            build_dir=Path(env.get("LEDGER_BUILD_DIR") or DEFAULT_BUILD_DIR),
            relayer_key=env.get("LEDGER_RELAYER_KEY") or None,
            unlicensed_plays_per_day=_count(env, "LEDGER_UNLICENSED_PLAYS_PER_DAY", DEFAULT_UNLICENSED_PLAYS_PER_DAY),
            device_backlog=_count(env, "LEDGER_DEVICE_BACKLOG", DEFAULT_DEVICE_BACKLOG),
            mqtt_url=env.get("LEDGER_MQTT_URL") or DEFAULT_MQTT_URL,
            mqtt_topic_prefix=_topic_prefix(env.get("LEDGER_MQTT_TOPIC_PREFIX") or DEFAULT_MQTT_TOPIC_PREFIX),
            log_level=_log_level(env.get("LEDGER_LOG_LEVEL") or DEFAULT_LOG_LEVEL, "LEDGER_LOG_LEVEL"),
        )

    def with_(self, **changes: Any) -> Settings:
        """A copy with some settings replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def relayer_private_key(self) -> str | None:
        """The relayer's key: LEDGER_RELAYER_KEY, else LEDGER_PRIVATE_KEY."""
        return self.relayer_key or self.private_key

    def deployment_file(self, chain_id: int) -> Path:
        """The deployments file for a chain: LEDGER_DEPLOYMENTS itself when it names a file."""
        if self.deployments.suffix == ".json":
            return self.deployments
        return self.deployments / f"{chain_id}.json"


# ----------------------------------------------------------------------------- the portal's settings


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """An integer setting that may be written with thousands separators (3,000,000 or 3_000_000)."""
    raw = (env.get(name) or "").strip().replace(",", "").replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, not {env.get(name)!r}")
    return int(raw)


def _public_url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    """A URL devices are given (provisioning files): one of ``schemes`` with a host, or None."""
    from urllib.parse import urlsplit

    raw = (env.get(name) or "").strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL with a host, not {raw!r}")
    return raw


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
    public_url: str | None = None  # e.g. https://portal.example.org (no trailing slash)
    public_mqtt_url: str | None = field(default=None, repr=False)  # may carry device credentials

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
        return cls(
            env=mode,
            secret_key=secret,
            relayer_key=env.get("LEDGER_GASLESS_KEY") or None,
            forwarder_address=env.get("LEDGER_FORWARDER_ADDRESS") or None,
            gas_budget=_count(env, "LEDGER_GAS_BUDGET", 3_000_000, minimum=0),
            k_anonymity=_count(env, "LEDGER_K_ANONYMITY", 3, minimum=1),
            rate_login=env.get("LEDGER_RATE_LOGIN") or cls.rate_login,
            rate_signup=env.get("LEDGER_RATE_SIGNUP") or cls.rate_signup,
            rate_token=env.get("LEDGER_RATE_TOKEN") or cls.rate_token,
            ratelimit_storage=env.get("LEDGER_RATELIMIT_STORAGE") or cls.ratelimit_storage,
            public_url=_public_url(env, "LEDGER_PUBLIC_URL", ("http", "https")),
            public_mqtt_url=_public_url(env, "LEDGER_PUBLIC_MQTT_URL", ("mqtt", "mqtts")),
        )
