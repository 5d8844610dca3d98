"""Start-up of the `ledger` command: commands that never talk to a node do not import web3.

An import check, not a timing assertion (timings on a shared machine are noise): each case runs
the command in a fresh interpreter and lists which heavy packages ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import eth_utils
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import address
from ledger.chain import checksum as chain_checksum
from ledger.errors import UserError

HEAVY = ("web3", "eth_utils", "eth_account", "paho", "sqlalchemy", "alembic", "ledger.models")

PROBE = f"""
import json, sys
from ledger.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_version_imports_no_web3():
    result = _run(["--version"])
    assert result == {"code": 0, "loaded": []}


def test_statement_imports_no_web3_nor_sqlalchemy(db_url):
    """``ledger statement`` reads the index through the driver: neither web3 nor SQLAlchemy
    (nor the ORM models) is imported, on SQLite and on PostgreSQL."""
    subprocess.run([sys.executable, "-m", "ledger", "--database-url", db_url, "db", "upgrade"], check=True, timeout=120)
    payee = "0x" + "ab" * 20
    for period in ("2026-11", "all"):
        result = _run(["--database-url", db_url, "statement", "--payee", payee, "--period", period, "--format", "json"])
        assert result == {"code": 0, "loaded": []}


def test_statement_on_an_old_schema_says_to_upgrade(db_url, capsys):
    """The driver path checks the schema revision as the engine path does (exit 1, one line)."""
    from ledger.cli import main

    subprocess.run(
        [sys.executable, "-m", "ledger", "--database-url", db_url, "db", "upgrade", "0400"], check=True, timeout=120
    )
    code = main(["--database-url", db_url, "statement", "--payee", "0x" + "ab" * 20, "--period", "all"])
    assert code == 1
    assert "run `ledger db upgrade`" in capsys.readouterr().err


def test_statement_by_territory_still_goes_through_an_engine(tmp_path):
    """--by-territory is not on the driver path: it may import SQLAlchemy, and it still works."""
    db = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    subprocess.run([sys.executable, "-m", "ledger", "--database-url", db, "db", "upgrade"], check=True, timeout=120)
    args = ["--database-url", db, "statement", "--payee", "0x" + "ab" * 20, "--period", "all", "--by-territory"]
    result = _run(args)
    assert result["code"] == 0 and "web3" not in result["loaded"]  # type: ignore[operator]


@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw):
    text = "0x" + raw.hex()
    for form in (text, text.upper().replace("0X", "0x"), raw.hex(), eth_utils.to_checksum_address(text)):
        assert address.checksum(form) == eth_utils.to_checksum_address(form) == chain_checksum(form)


@pytest.mark.parametrize("bad", ["0x1234", "0x" + "g" * 40, "0x" + "ab" * 20 + "\n", "", "0x" + "ab" * 21])
def test_checksum_refuses_what_chain_refuses(bad):
    with pytest.raises(UserError):
        address.checksum(bad, "--payee")
    with pytest.raises(UserError):
        chain_checksum(bad, "--payee")
