"""The `ledger` command: help, the happy paths against Anvil, and clear errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.chain import Deployment
from ledger.cli import main

SUBCOMMANDS = [
    [],
    ["deploy"],
    ["index"],
    ["statement"],
    ["works"],
    ["balance"],
    ["db"],
    ["db", "upgrade"],
    ["db", "downgrade"],
    ["db", "current"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "ledger")
def test_help(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(words + ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ledger")
    if words:
        assert " ".join(words) in out.splitlines()[0]


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "ledger"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("deploy", "index", "statement", "works", "balance", "db"):
        assert word in result.stdout


@pytest.fixture
def indexed(cli_env, history):
    assert main(["db", "upgrade"]) == 0
    assert main(["index"]) == 0
    return cli_env


def test_statement_csv_and_json(indexed, history, client, capsys):
    capsys.readouterr()
    artist = history.accounts["artist"]
    assert main(["statement", "--payee", artist.lower(), "--period", "all", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["payee"] == artist
    assert int(doc["totals"]["net"]) == client.balance_of(artist) + history.withdrawn[artist]
    assert main(["statement", "--payee", artist, "--from", "2026-10", "--to", "2026-11"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "work_id,title,isrc,plays,licensed_plays,gross,share_bps,net"
    assert lines[-1].startswith("TOTAL,")


def test_statement_by_territory(indexed, history, capsys):
    capsys.readouterr()
    label = history.accounts["label"]
    assert main(["statement", "--payee", label, "--period", "all", "--by-territory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "work_id,territory,plays,licensed_plays,gross"
    assert lines[-1].startswith("TOTAL,")
    assert {line.split(",")[1] for line in lines[1:-1]} >= {"GB"}


def test_statement_to_file(indexed, history, tmp_path, capsys):
    out = tmp_path / "st.csv"
    assert main(["statement", "--payee", history.accounts["label"], "--period", "2026-11", "-o", str(out)]) == 0
    assert out.read_text().startswith("work_id,")


def test_works_and_balance(indexed, history, client, capsys):
    capsys.readouterr()
    assert main(["works"]) == 0
    out = capsys.readouterr().out
    assert "Blue Harbour" in out and "GBABC2600001" in out
    assert main(["works", "--owner", history.accounts["label"], "--format", "json"]) == 0
    owned = json.loads(capsys.readouterr().out)
    assert {w["work_id"] for w in owned} == {history.works[n] for n in ("lullaby", "anthem", "thirds")}
    cowriter = history.accounts["cowriter"]
    assert main(["balance", cowriter, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert int(doc["payee_balance"]) == client.balance_of(cowriter)
    assert int(doc["indexed_credited"]) - int(doc["indexed_withdrawn"]) == client.balance_of(cowriter)


def test_deploy_writes_a_deployments_file(cli_env, tmp_path, monkeypatch, w3, capsys):
    target = tmp_path / "deployments"
    monkeypatch.setenv("LEDGER_DEPLOYMENTS", str(target))
    assert main(["deploy"]) == 0
    path = target / f"{w3.eth.chain_id}.json"
    d = Deployment.load(path)
    assert set(d.contracts) == {"TestStablecoin", "TrustedForwarder", "WorkRegistry", "RoyaltyLedger"}
    assert d.deployer == w3.eth.accounts[0]
    for info in d.contracts.values():
        assert w3.eth.get_code(info.address)
    doc = json.loads(path.read_text())
    assert set(doc) == {"chainId", "deployBlock", "deployer", "contracts"}
    # a second deploy refuses to overwrite; with an external token no TestStablecoin is deployed
    assert main(["deploy"]) == 2
    token = d.contracts["TestStablecoin"].address
    assert main(["deploy", "--force", "--token", token]) == 0
    d2 = Deployment.load(path)
    assert "TestStablecoin" not in d2.contracts and d2.token.address == token


def test_deploy_refuses_the_open_mint_token_off_a_devnet(cli_env, tmp_path, monkeypatch, capsys):
    from tests.support import running_anvil

    with running_anvil("--chain-id", "8453") as url:  # a chain id that is not a devnet's
        monkeypatch.setenv("LEDGER_RPC_URL", url)
        monkeypatch.setenv("LEDGER_DEPLOYMENTS", str(tmp_path / "deployments"))
        monkeypatch.setenv("LEDGER_PRIVATE_KEY", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
        assert main(["deploy"]) == 2
        assert "not a devnet" in capsys.readouterr().err
        assert not (tmp_path / "deployments" / "8453.json").exists()
        assert main(["deploy", "--test-token"]) == 0  # asked for explicitly
        assert "TestStablecoin" in Deployment.load(tmp_path / "deployments" / "8453.json").contracts


@pytest.mark.parametrize(
    "argv, message",
    [
        (["statement", "--payee", "0x1234", "--period", "2026-11"], "not an Ethereum address"),
        (["statement", "--payee", "0x" + "11" * 20, "--period", "2026-13"], "not a month"),
        (["statement", "--payee", "0x" + "11" * 20, "--period", "November"], "not a month"),
        (["statement", "--payee", "0x" + "11" * 20], "give a period"),
        (["statement", "--payee", "0x" + "11" * 20, "--from", "2026-12", "--to", "2026-01"], "after"),
        (["balance", "not-an-address"], "not an Ethereum address"),
        (["works", "--owner", "0xzz"], "not an Ethereum address"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(indexed, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreachable_database_is_a_clear_error(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("LEDGER_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["works"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "Traceback" not in err


def test_unmigrated_database_is_a_clear_error(cli_env, capsys):
    assert main(["statement", "--payee", "0x" + "11" * 20, "--period", "all"]) == 1
    assert "ledger db upgrade" in capsys.readouterr().err


def test_unreachable_node_is_a_clear_error(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("LEDGER_RPC_URL", "http://127.0.0.1:1")
    assert main(["index"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Ethereum node" in err and "Traceback" not in err


def test_missing_deployment_is_a_clear_error(cli_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LEDGER_DEPLOYMENTS", str(tmp_path / "nowhere"))
    assert main(["balance", "0x" + "11" * 20]) == 1
    assert "ledger deploy" in capsys.readouterr().err


def test_bad_setting_is_a_user_error(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("LEDGER_CONFIRMATIONS", "many")
    assert main(["index"]) == 2
    assert "LEDGER_CONFIRMATIONS" in capsys.readouterr().err


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "ledger"
    result = subprocess.run(
        [str(exe), "statement", "--payee", "bad", "--period", "all"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "not an Ethereum address" in result.stderr


@pytest.mark.parametrize("value", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_relay_partition_must_be_k_of_n(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["relay", "--partition", value])
    assert exit_.value.code == 2
    assert "--partition" in capsys.readouterr().err


def test_relay_partition_parses_k_of_n():
    from ledger.cli import _parser

    assert _parser().parse_args(["relay", "--partition", "1/2"]).partition == (1, 2)
    assert _parser().parse_args(["relay"]).partition == (0, 1)
