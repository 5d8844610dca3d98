"""Process wiring: settings -> node, deployment and database, in one place.

The CLI, the services it starts (relayer, MQTT ingest, indexer) and the web app open what they
need through these functions; the services themselves take already-opened objects and never
read settings or import the CLI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from .config import Settings
from .db import check_connection, current_revision, make_engine, require_schema, table_names, upgrade

if TYPE_CHECKING:  # web3 is imported only by what opens the chain (commands reading the index start fast)
    from web3 import Web3

    from .chain import Deployment


@dataclass(frozen=True)
class Runtime:
    """An opened node, deployment and migrated database."""

    settings: Settings
    w3: Web3
    deployment: Deployment
    engine: Engine

    @property
    def ledger_address(self) -> str:
        return self.deployment.ledger.address


def open_engine(settings: Settings, migrate_if_empty: bool = False) -> Engine:
    """The index database; it must be at the schema head (an empty one is migrated on request)."""
    engine = make_engine(settings.database_url)
    check_connection(engine)
    if migrate_if_empty and current_revision(engine) is None and not table_names(engine):
        upgrade(engine)
    require_schema(engine)
    return engine


def open_chain(settings: Settings, ledger_address: str | None = None) -> tuple[Web3, Deployment]:
    """The node and the deployment of its chain (ABIs from the deployments file). ``ledger_address``
    points the deployment at another RoyaltyLedger of the same build."""
    from eth_utils import to_checksum_address

    from .chain import ContractInfo, checksum, connect, load_deployment

    w3 = connect(settings.rpc_url)
    deployment = load_deployment(w3, settings.deployment_file(w3.eth.chain_id))
    if ledger_address is not None:
        address = to_checksum_address(checksum(ledger_address, "--ledger"))
        contracts = dict(deployment.contracts)
        contracts["RoyaltyLedger"] = ContractInfo(address, deployment.ledger.abi)
        deployment = dataclasses.replace(deployment, contracts=contracts)
    return w3, deployment


def open_runtime(
    settings: Settings | None = None, ledger_address: str | None = None, migrate_if_empty: bool = False
) -> Runtime:
    """Node, deployment and database from :class:`~ledger.config.Settings` (default: the
    LEDGER_* environment)."""
    settings = settings or Settings.from_env()
    w3, deployment = open_chain(settings, ledger_address)
    return Runtime(settings, w3, deployment, open_engine(settings, migrate_if_empty))
