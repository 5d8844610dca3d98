"""Pieces that need no chain: periods, metadata, amounts, statement formats, settings."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from ledger.config import ConfigError, Settings
from ledger.errors import UserError
from ledger.indexer import period_of
from ledger.metadata import isrc_from_bytes12, isrc_to_bytes12, make_data_uri, parse_metadata_uri
from ledger.models import Payee
from ledger.statements import Period, Statement, StatementRow, parse_period


def test_period_of_is_the_utc_month():
    assert period_of(1793491199) == 202610  # 2026-10-31T23:59:59Z
    assert period_of(1793491200) == 202611


@pytest.mark.parametrize(
    "args, expected",
    [
        (("2026-11", None, None), Period(202611, 202611)),
        (("all", None, None), Period()),
        ((None, "2026-01", "2026-03"), Period(202601, 202603)),
        ((None, "2026-01", None), Period(202601, None)),
    ],
)
def test_parse_period(args, expected):
    assert parse_period(*args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("2026-00", None, None),
        ("26-11", None, None),
        (None, None, None),
        ("2026-11", "2026-01", None),
        (None, "2026-05", "2026-04"),
    ],
)
def test_parse_period_rejects(args):
    with pytest.raises(UserError):
        parse_period(*args)


def test_metadata_round_trip():
    uri = make_data_uri("Blue Harbour, Ünïcode", "T-123.456.789-0")
    assert parse_metadata_uri(uri).title == "Blue Harbour, Ünïcode"
    assert parse_metadata_uri(uri).iswc == "T-123.456.789-0"
    b64 = "data:application/json;base64,eyJuYW1lIjogIlNvbmcifQ=="  # {"name": "Song"}
    assert parse_metadata_uri(b64).title == "Song"
    assert parse_metadata_uri("ipfs://bafy").title is None
    assert parse_metadata_uri("data:application/json,{not json").title is None


def test_isrc_encoding():
    assert isrc_to_bytes12("GB-ABC-26-00001") == b"GBABC2600001"
    assert isrc_to_bytes12(None) == bytes(12)
    assert isrc_from_bytes12(bytes(12)) is None
    with pytest.raises(UserError):
        isrc_to_bytes12("GB-ABC")


def test_statement_formats_are_exact():
    rows = [
        StatementRow(1, 'Quote "me", please', "GBABC2600001", 10, 8, 2**70, 6000, 2**70 // 2),
        StatementRow(2, None, None, 0, 0, 0, 0, 5),
    ]
    st = Statement("0x" + "11" * 20, Period(202611, 202611), rows)
    csv_text = st.to_csv()
    assert csv_text.splitlines()[1] == f'1,"Quote ""me"", please",GBABC2600001,10,8,{2**70},6000,{2**69}'
    assert csv_text.splitlines()[-1] == f"TOTAL,,,10,8,{2**70},,{2**69 + 5}"
    doc = json.loads(st.to_json())
    assert doc["totals"]["net"] == str(2**69 + 5) and doc["period"]["label"] == "2026-11"


def test_amounts_are_never_floats(engine):
    with engine.begin() as conn:
        with pytest.raises(Exception):
            conn.execute(Payee.__table__.insert().values(address="0x" + "22" * 20, credited=1.5, withdrawn=0))


def test_amounts_are_exact_integers(engine):
    big = 2**62 + 1 if engine.dialect.name == "sqlite" else 2**200 + 1
    with engine.begin() as conn:
        conn.execute(Payee.__table__.insert().values(address="0x" + "33" * 20, credited=big, withdrawn=1))
    with engine.connect() as conn:
        row = conn.execute(select(Payee.credited, Payee.withdrawn)).one()
    assert row.credited == big and isinstance(row.credited, int)


def test_settings_from_env(tmp_path):
    s = Settings.from_env({"LEDGER_CONFIRMATIONS": "3", "LEDGER_DEPLOYMENTS": str(tmp_path / "d.json")})
    assert s.confirmations == 3 and s.rpc_url == "http://127.0.0.1:8545"
    assert s.deployment_file(1) == tmp_path / "d.json"
    assert Settings.from_env({}).database_url.endswith("var/ledger.sqlite3")
    assert Settings.from_env({"LEDGER_DEPLOYMENTS": "deployments"}).deployment_file(31337).name == "31337.json"
    with pytest.raises(ConfigError):
        Settings.from_env({"LEDGER_BLOCK_RANGE": "0"})
