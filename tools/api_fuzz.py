"""Fuzz the JSON API with schemathesis against a throwaway ledger (`make api-fuzz`).

Standard library only; run by the tools virtualenv's Python (schemathesis lives there, its
hypothesis pin fights brownie's). Starts, on free ports and in a temporary folder:
  Anvil (no state file), the contracts deployed by `ledger deploy`, a fresh SQLite index
  (`ledger db upgrade`), and the API (`python -m webapp`) with the project's virtualenv;
then runs schemathesis with a fixed seed and few examples against the OpenAPI document the app
serves (/api/v1/openapi.json when it exists, else /api/v1/openapi.yaml), checking that no
response is a 5xx and that every response conforms to the schema; then stops everything.
Expects compiled artifacts in build/contracts (`brownie compile`, as `make test` does first).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_BIN = ROOT / ".venv" / "bin"
TOOLS_BIN = Path(sys.executable).parent
# Anvil's first default account: a public devnet key, never used outside a devnet.
DEVNET_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float, data: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, data, {"content-type": "application/json"})
            urllib.request.urlopen(request, timeout=5).read()
            return
        except urllib.error.HTTPError:  # it answered (health is 503 while no indexer runs): the app is up
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise SystemExit(f"api_fuzz: {url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


def schema_url(api: str) -> str:
    """openapi.json when the app serves it (the portal adds it), else openapi.yaml."""
    try:
        urllib.request.urlopen(f"{api}/openapi.json", timeout=5).read()
        return f"{api}/openapi.json"
    except urllib.error.HTTPError:
        return f"{api}/openapi.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--max-time", type=int, default=40, help="schemathesis time budget, seconds")
    args = parser.parse_args()

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="api-fuzz-") as tmp:
        work = Path(tmp)
        anvil_port, app_port = free_port(), free_port()
        env = dict(
            os.environ,
            PATH=f"{PROJECT_BIN}{os.pathsep}{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
            LEDGER_RPC_URL=f"http://127.0.0.1:{anvil_port}",
            LEDGER_PRIVATE_KEY=DEVNET_KEY,
            LEDGER_DATABASE_URL=f"sqlite:///{work / 'ledger.sqlite3'}",
            LEDGER_DEPLOYMENTS=str(work),
            LEDGER_BUILD_DIR=str(ROOT / "build" / "contracts"),
            LEDGER_LOG_LEVEL="WARNING",
        )
        log = (work / "services.log").open("wb")
        try:
            processes.append(
                subprocess.Popen(
                    ["anvil", "--host", "127.0.0.1", "--port", str(anvil_port), "--gas-limit", "30000000", "--silent"],
                    env=env,
                    stdout=log,
                    stderr=log,
                    cwd=work,
                )
            )
            rpc = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
            wait_for(env["LEDGER_RPC_URL"], 30, rpc)
            for command in (["ledger", "deploy", "--force"], ["ledger", "db", "upgrade"]):
                subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=log, stderr=log)
            processes.append(
                subprocess.Popen(
                    [str(PROJECT_BIN / "python"), "-m", "webapp", "--host", "127.0.0.1", "--port", str(app_port)],
                    env=env,
                    stdout=log,
                    stderr=log,
                    cwd=ROOT,
                )
            )
            api = f"http://127.0.0.1:{app_port}/api/v1"
            wait_for(f"{api}/health", 60)
            schema = schema_url(api)
            print(
                f"api_fuzz: schemathesis on {schema} (seed {args.seed}, "
                f"at most {args.max_examples} examples per operation)",
                flush=True,
            )
            result = subprocess.run(
                [
                    str(TOOLS_BIN / "schemathesis"),
                    "run",
                    schema,
                    "--checks",
                    CHECKS,
                    "--seed",
                    str(args.seed),
                    "--max-examples",
                    str(args.max_examples),
                    "--max-time",
                    str(args.max_time),
                    "--workers",
                    "1",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--request-timeout",
                    "20",
                    "--suppress-health-check",
                    "too_slow",
                    # /health answers 503 by design while no indexer runs (this throwaway ledger has
                    # none): not a server error; tests/webapp checks its answers.
                    "--exclude-path",
                    "/health",
                ],
                cwd=work,
            )
            if result.returncode != 0:
                log.flush()
                tail = (work / "services.log").read_text(errors="replace")[-3000:]
                print(f"api_fuzz: schemathesis failed; last lines of the services' log:\n{tail}")
            return result.returncode
        except subprocess.CalledProcessError as exc:
            log.flush()
            sys.stderr.write((work / "services.log").read_text(errors="replace")[-3000:])
            print(f"api_fuzz: {' '.join(exc.cmd)} failed")
            return 2
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()


if __name__ == "__main__":
    sys.exit(main())
