"""`device.py status` says what is waiting and why: unsealed plays, sealed batches waiting to be
sent (with the last error), batches the server rejected (code and what to do), the last
acknowledgement and the server the device talks to. Delivered to a real HTTP server that
answers as ingest does (202, or a 4xx/5xx error object)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import DEVICE_SCRIPT

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LICENSEE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


class Answers(BaseHTTPRequestHandler):
    """Answers each batch by its nonce: ``server.answers[nonce] = (status, body)``; default 202."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = self.server.answers.get(body["nonce"], (202, {"state": "pending", "nonce": body["nonce"]}))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    httpd.answers = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def run(state, *args, check=True):
    proc = subprocess.run(
        [sys.executable, str(DEVICE_SCRIPT), "--state", str(state), "--quiet", "--timeout", "5", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode in (0, 3), proc.stderr
    return proc


def provision(state, endpoint, address):
    (state / "provisioning.json").write_text(
        json.dumps(
            {
                "device": address,
                "deviceId": str((1 << 32) | 3),
                "licensee": LICENSEE,
                "transport": "http",
                "endpoint": endpoint,
                "mqttUrl": "",
                "chainId": 31337,
                "ledger": LEDGER,
            }
        )
    )


def test_status_explains_unsent_sealed_rejected_and_the_last_ack(tmp_path, server):
    state = tmp_path / "dev"
    address = run(state, "keygen").stdout.strip()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/api/v1/batches"
    provision(state, endpoint, address)

    fresh = run(state, "status").stdout
    assert f"Device {address}" in fresh and f"Server: http {endpoint}" in fresh
    assert "Last acknowledged: none yet" in fresh and "Waiting: nothing" in fresh

    # batch 0 is acknowledged, batch 1 refused for good (device_revoked), then the server goes away
    server.answers[1] = (403, {"error": {"code": "device_revoked", "message": "device 0x… was revoked"}})
    run(state, "play", "--work", 7, "--count", 3, "--at", 1_764_000_000)
    run(state, "flush", "--batch-size", 1000)
    run(state, "play", "--work", 8, "--count", 2, "--at", 1_764_000_100)
    run(state, "flush")
    doc = json.loads(run(state, "status", "--json").stdout)
    assert doc["lastAck"]["nonce"] == 0 and doc["lastAck"]["status"] == 202
    assert doc["rejected"][0]["code"] == "device_revoked" and doc["rejectedPlays"] == 2

    server.answers[2] = (503, {"error": {"code": "unavailable", "message": "the chain node cannot be reached"}})
    run(state, "play", "--work", 9, "--count", 4, "--at", 1_764_000_200)
    assert run(state, "flush").returncode == 3  # kept in the spool
    run(state, "play", "--work", 9, "--count", 5)  # not sealed yet

    text = run(state, "status").stdout
    assert "Last acknowledged: batch #0 at 2" in text
    assert "5 plays not sealed into a batch yet" in text and "`flush` seals and sends now" in text
    assert "1 signed batch(es) (4 plays, #2..#2)" in text
    assert "unavailable: the chain node cannot be reached" in text and "`run` keeps retrying" in text
    assert "Rejected (never retried: 1 batch(es), 2 plays" in text
    assert "batch #1 (2 plays)" in text and "403 device_revoked" in text
    assert "register the key again" in text

    doc = json.loads(run(state, "status", "--json").stdout)
    assert (doc["unbatchedPlays"], doc["spooledBatches"], doc["spooledPlays"], doc["nextNonce"]) == (5, 1, 4, 3)
    assert doc["server"] == {"transport": "http", "url": endpoint, "chainId": 31337, "ledger": LEDGER}
    assert doc["device"] == address


def test_status_without_provisioning_says_where_to_get_it(tmp_path):
    state = tmp_path / "dev"
    run(state, "keygen")
    proc = run(state, "status")
    assert proc.returncode == 0
    assert "no provisioning file" in proc.stdout and "download it from the portal" in proc.stdout


def test_status_without_a_key_says_to_make_one(tmp_path):
    proc = run(tmp_path / "dev", "status")
    assert proc.returncode == 0 and "run `device.py keygen` first" in proc.stdout
