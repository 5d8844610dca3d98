"""Every LEDGER_* setting goes through ledger.config, and docs/ledger.md documents each one."""

from __future__ import annotations

import re

import pytest

from ledger.config import ConfigError, Settings
from tests.support import ROOT

NAME = re.compile(r"LEDGER_[A-Z_]+")


def _names_in(path_glob: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob(path_glob)):
        names = set(NAME.findall(path.read_text()))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_only_ledger_config_reads_ledger_variables():
    readers = {}
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        text = path.read_text()
        if re.search(r"os\.environ|getenv", text) and NAME.search(text):
            readers[str(path.relative_to(ROOT))] = sorted(set(NAME.findall(text)))
    assert set(readers) <= {"ledger/config.py", "ledger/migrations/env.py"}, readers


def test_docs_table_names_every_setting():
    config = set(NAME.findall((ROOT / "ledger" / "config.py").read_text()))
    docs = set(re.findall(r"^\| `(LEDGER_[A-Z_]+)` \|", (ROOT / "docs" / "ledger.md").read_text(), re.M))
    assert config == docs


def test_relayer_key_falls_back_to_the_private_key():
    assert Settings.from_env({"LEDGER_PRIVATE_KEY": "0x01"}).relayer_private_key == "0x01"
    both = Settings.from_env({"LEDGER_PRIVATE_KEY": "0x01", "LEDGER_RELAYER_KEY": "0x02"})
    assert both.relayer_private_key == "0x02"


def test_log_level_is_read_and_checked():
    assert Settings.from_env({"LEDGER_LOG_LEVEL": "info"}).log_level == "INFO"
    with pytest.raises(ConfigError):
        Settings.from_env({"LEDGER_LOG_LEVEL": "loud"})


def test_keys_and_broker_credentials_stay_out_of_repr():
    s = Settings.from_env({"LEDGER_RELAYER_KEY": "0xsecret", "LEDGER_MQTT_URL": "mqtt://u:hunter2@h"})
    assert "secret" not in repr(s) and "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("argv", "level"), [(["--debug"], "DEBUG"), (["--debug", "--log-level", "info"], "INFO"), ([], "WARNING")]
)
def test_log_level_comes_from_the_option_then_debug_then_the_setting(monkeypatch, argv, level):
    import logging

    from ledger.cli import main

    monkeypatch.setattr(logging.root, "handlers", [])  # let basicConfig configure afresh
    monkeypatch.setenv("LEDGER_DATABASE_URL", "sqlite://")
    monkeypatch.delenv("LEDGER_LOG_LEVEL", raising=False)
    assert main([*argv, "db", "current"]) == 0
    assert logging.getLevelName(logging.root.level) == level
