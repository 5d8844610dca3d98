"""Test infrastructure shared by the pytest suites (not the brownie ones): free ports and a real
Anvil process. Import as `from tests.support import ...` (the repository root is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build" / "contracts"
DEVICE_SCRIPT = ROOT / "scripts" / "device.py"
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


def ensure_compiled() -> None:
    """Compiles the contracts (brownie, through the solc shim) when the build is missing."""
    needed = ["TestStablecoin", "WorkRegistry", "RoyaltyLedger"]
    if all((BUILD_DIR / f"{n}.json").exists() for n in needed):
        return
    env = dict(
        os.environ,
        SOLCX_BINARY_PATH=str(ROOT / ".solc"),
        PATH=f"{ROOT / '.venv' / 'bin'}:{ROOT / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
    )
    subprocess.run(["brownie", "compile"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'ledger.sqlite3'}"


def load_device_script():
    """scripts/device.py loaded as a module (it is a script, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("device_script", DEVICE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anvil_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    assert found, "anvil not found: run `make install`"
    return found


@contextlib.contextmanager
def running_anvil(*extra_args: str):
    """An Anvil on a free port (30M block gas limit), stopped on exit; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [anvil_binary(), "--port", str(port), "--gas-limit", "30000000", "--silent", *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        for _ in range(200):
            try:
                w3.eth.chain_id
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None:
                    raise RuntimeError(f"anvil exited: {proc.stderr.read().decode()}")
                time.sleep(0.05)
        else:
            raise RuntimeError("anvil did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


#: The PostgreSQL the suites use; each test gets a database of its own in this cluster.
PG_ADMIN_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_database(prefix: str = "ledger_test"):
    """A PostgreSQL database created for one test and dropped after it; yields its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        raise AssertionError(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (run `make services`): {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def migrated_engine(url: str):
    """An engine on `url` with the schema at head, disposed on exit."""
    from ledger.db import make_engine, upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
