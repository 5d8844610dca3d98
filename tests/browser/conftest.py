"""Browser tests: Python Playwright driving Debian's Chromium against a real portal (gunicorn)
that each module starts on free ports, with its own Anvil, deployed contracts and SQLite index.

Screenshots go to test-output/screenshots/ (gitignored). Run:
``pytest -p no:pytest-brownie -p no:cacheprovider tests/browser``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from web3 import Web3

from tests.support import MQTT_HOST, MQTT_PORT, ROOT, free_port, running_anvil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUILD_DIR = ROOT / "build" / "contracts"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
SECRET = "browser-test-secret-" + "z" * 32
ANVIL_KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # relays play batches
ANVIL_KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # pays gasless actions


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs_forwarder: on-chain portal actions through the ERC2771Forwarder "
        "(skipped until the contracts deploy one)",
    )


def _compiled() -> None:
    if all(
        (BUILD_DIR / f"{n}.json").exists()
        for n in ("TestStablecoin", "TrustedForwarder", "WorkRegistry", "RoyaltyLedger")
    ):
        return
    env = dict(
        os.environ,
        SOLCX_BINARY_PATH=str(ROOT / ".solc"),
        PATH=f"{ROOT / '.venv' / 'bin'}:{ROOT / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
    )
    subprocess.run(["brownie", "compile"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)


@dataclass
class Chain:
    url: str
    w3: Web3
    deployment: object
    deployments_file: Path


@dataclass
class PortalServer:
    url: str
    database_url: str
    engine: object
    chain: Chain
    env: dict

    @property
    def mqtt_topic_prefix(self) -> str:
        return self.env["LEDGER_MQTT_TOPIC_PREFIX"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from ledger.chain import deploy

    _compiled()
    with running_anvil("--chain-id", "31337") as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, w3.eth.accounts[0], BUILD_DIR)
        path = tmp_path_factory.mktemp("deployments") / f"{deployment.chain_id}.json"
        deployment.save(path)
        yield Chain(url, w3, deployment, path)


@pytest.fixture(scope="module")
def portal(chain, tmp_path_factory):
    from ledger.db import make_engine, upgrade

    database_url = f"sqlite:///{tmp_path_factory.mktemp('portal') / 'ledger.sqlite3'}"
    engine = make_engine(database_url)
    upgrade(engine)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        LEDGER_DATABASE_URL=database_url,
        LEDGER_RPC_URL=chain.url,
        LEDGER_DEPLOYMENTS=str(chain.deployments_file),
        LEDGER_SECRET_KEY=SECRET,
        LEDGER_RELAYER_KEY=ANVIL_KEY0,
        LEDGER_GASLESS_KEY=ANVIL_KEY1,
        LEDGER_RATE_SIGNUP="100 per hour",
        # provisioning files name this test's servers; the topics are this run's own (see mqtt_ingest)
        LEDGER_PUBLIC_URL=url,
        LEDGER_PUBLIC_MQTT_URL=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        LEDGER_MQTT_TOPIC_PREFIX=f"test-{uuid.uuid4().hex[:12]}/plays",
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(tmp_path_factory.mktemp("logs") / "gunicorn.log", "w")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--preload",
            "--no-control-socket",
            "webapp:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/", timeout=1).ok:  # /api/v1/health is 503 without an indexer
                    break
            except requests.RequestException:
                if proc.poll() is not None:
                    raise RuntimeError("gunicorn exited; see its log") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("the portal did not start")
        yield PortalServer(url, database_url, engine, chain, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        engine.dispose()


@pytest.fixture(scope="module")
def mqtt_ingest(portal):
    """The portal's MQTT consumer (ledger.mqtt.MqttIngest, what `ledger ingest-mqtt` runs) on the
    machine's broker, on the portal's own topic prefix and database."""
    from ledger.ingest import IngestContext
    from ledger.mqtt import MqttIngest

    ctx = IngestContext.create(portal.chain.w3, portal.chain.deployment, portal.engine)
    consumer = MqttIngest(
        ctx,
        f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        topic_prefix=portal.mqtt_topic_prefix,
        client_id=f"browser-ingest-{uuid.uuid4().hex[:10]}",
    )
    consumer.start()
    yield consumer
    consumer.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (make install-chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab that records CSP violations and console errors, and takes named screenshots."""

    def __init__(self, browser, base_url: str):
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self):
        self.context.close()


@pytest.fixture
def new_page(browser, portal):
    pages = []

    def make() -> Page:
        page = Page(browser, portal.url)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()
