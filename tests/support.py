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


def _pg_admin():
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        raise AssertionError(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (run `make services`): {exc}")
    return admin


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


#: Databases migrated to head once per test session, copied for each test that asks for a migrated
#: one (a copy takes milliseconds; running the migrations takes 0.1-0.4 s a database).
_templates: dict[str, str] = {}


def _drop_templates() -> None:
    from sqlalchemy import text

    name = _templates.pop("postgresql", None)
    if name is not None:
        admin = _pg_admin()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    folder = _templates.pop("sqlite-dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _template(kind: str) -> str:
    """The name (PostgreSQL) or file (SQLite) of this session's migrated template database."""
    if kind in _templates:
        return _templates[kind]
    import atexit
    import tempfile

    from sqlalchemy import text

    if not _templates:
        atexit.register(_drop_templates)
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="ledger-template-"))
        _templates["sqlite-dir"] = str(folder)
        with migrated_engine(sqlite_url(folder)):
            pass
        path = folder / "ledger.sqlite3"
        assert not Path(f"{path}-wal").exists(), "the template's WAL was not checkpointed"
        _templates[kind] = str(path)
    else:
        name = f"ledger_template_{uuid.uuid4().hex[:12]}"
        admin = _pg_admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        _templates[kind] = name  # dropped at exit even if the migration fails
        with migrated_engine(_pg_url(name)):
            pass  # disposed: no connection left to the template (CREATE DATABASE ... TEMPLATE needs none)
    return _templates[kind]


def migrated_sqlite_file(path: Path) -> str:
    """A SQLite database at ``path``, migrated to head (a copy of the session's template); its URL."""
    shutil.copyfile(_template("sqlite"), path)
    return f"sqlite:///{path}"


@contextlib.contextmanager
def postgres_database(prefix: str = "ledger_test", migrated: bool = False):
    """A PostgreSQL database created for one test and dropped after it; yields its URL. With
    ``migrated``, the database is a copy of the session's template migrated to head."""
    from sqlalchemy import text

    template = f' TEMPLATE "{_template("postgresql")}"' if migrated else ""
    admin = _pg_admin()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def migrated_engine(url: str, upgrade_schema: bool = True):
    """An engine on `url` with the schema at head (migrated here unless ``upgrade_schema`` is
    false: a copy of the session's template), disposed on exit."""
    from ledger.db import make_engine, require_schema, upgrade

    engine = make_engine(url)
    try:
        if upgrade_schema:
            upgrade(engine)
        else:
            require_schema(engine)
        yield engine
    finally:
        engine.dispose()
