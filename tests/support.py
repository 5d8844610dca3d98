"""Test infrastructure shared by the pytest suites (not the brownie ones): free ports and a real
Anvil process. Import as `from tests.support import ...` (the repository root is on sys.path)."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]


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
    proc = subprocess.Popen([anvil_binary(), "--port", str(port), "--gas-limit", "30000000", "--silent",
                             *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
