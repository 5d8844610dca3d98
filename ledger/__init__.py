"""The royalty ledger library: chain client, SQL index, event indexer, statements and CLI.

No Flask here: the portal builds on this package. Modules, one job each:

- :mod:`ledger.config`      settings from the environment (``LEDGER_*``)
- :mod:`ledger.chain`       web3 client for the contracts, deployment, revert -> exception mapping
- :mod:`ledger.errors`      Python exceptions named after the contracts' custom errors
- :mod:`ledger.models`      SQLAlchemy 2.0 models of the index
- :mod:`ledger.db`          engines, sessions and Alembic migrations
- :mod:`ledger.indexer`     contract events -> SQL, in block ranges, idempotent
- :mod:`ledger.statements`  royalty statements per payee and period (JSON / CSV)
- :mod:`ledger.cli`         the ``ledger`` command
- :mod:`ledger.playbatch`   the play batch formats shared with devices and the relayer
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
