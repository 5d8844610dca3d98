"""Settings of the ledger, read from the environment.

=========================  ==============================================================
``LEDGER_RPC_URL``         JSON-RPC endpoint (default ``http://127.0.0.1:8545``, Anvil)
``LEDGER_DATABASE_URL``    SQLAlchemy URL (default SQLite file ``var/ledger.sqlite3``)
``LEDGER_DEPLOYMENTS``     deployments file, or folder of ``<chainId>.json`` files
                           (default ``deployments/``)
``LEDGER_CONFIRMATIONS``   blocks the indexer waits before reading a block (default 0)
``LEDGER_BLOCK_RANGE``     blocks per indexer range, one SQL transaction each (default 2000)
``LEDGER_PRIVATE_KEY``     key that signs transactions (default: the node's first unlocked
                           account, which only a devnet has)
``LEDGER_TOKEN_ADDRESS``   settlement token for ``ledger deploy`` (default: deploy the test
                           stablecoin, devnet only)
``LEDGER_BUILD_DIR``       compiled contract artifacts (default ``build/contracts``)
=========================  ==============================================================

Relative paths are relative to the working directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

DEFAULT_RPC_URL = "http://127.0.0.1:8545"
DEFAULT_DATABASE_PATH = Path("var") / "ledger.sqlite3"
DEFAULT_DEPLOYMENTS = Path("deployments")
DEFAULT_BUILD_DIR = Path("build") / "contracts"
DEFAULT_BLOCK_RANGE = 2000


class ConfigError(ValueError):
    """A setting has a value the ledger cannot use."""


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
    private_key: Optional[str] = field(default=None, repr=False)
    token_address: Optional[str] = None
    build_dir: Path = DEFAULT_BUILD_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            rpc_url=env.get("LEDGER_RPC_URL") or DEFAULT_RPC_URL,
            database_url=env.get("LEDGER_DATABASE_URL") or default_database_url(),
            deployments=Path(env.get("LEDGER_DEPLOYMENTS") or DEFAULT_DEPLOYMENTS),
            confirmations=_int(env, "LEDGER_CONFIRMATIONS", 0),
            block_range=_int(env, "LEDGER_BLOCK_RANGE", DEFAULT_BLOCK_RANGE, minimum=1),
            private_key=env.get("LEDGER_PRIVATE_KEY") or None,
            token_address=env.get("LEDGER_TOKEN_ADDRESS") or None,
            build_dir=Path(env.get("LEDGER_BUILD_DIR") or DEFAULT_BUILD_DIR),
        )

    def with_(self, **changes) -> "Settings":
        """A copy with some settings replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def deployment_file(self, chain_id: int) -> Path:
        """The deployments file for a chain: LEDGER_DEPLOYMENTS itself when it names a file."""
        if self.deployments.suffix == ".json":
            return self.deployments
        return self.deployments / f"{chain_id}.json"
