"""Portal settings: they live in :mod:`ledger.config` with every other ``LEDGER_*`` variable
(docs/ledger.md has the one table); re-exported here for the web app."""

from ledger.config import SECRET_FILE, PortalSettings, devnet_secret

__all__ = ["SECRET_FILE", "PortalSettings", "devnet_secret"]
