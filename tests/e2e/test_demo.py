"""`make demo`'s seeding (scripts/demo.py) on a fresh devnet of its own, begun two days back as
scripts/run.sh begins a fresh demo devnet: the accounts, works, splits, licenses, escrow and
devices exist on chain and in the index, the devices' backlog of plays went through the real
ingest (HTTP and MQTT), relayer and indexer onto more than one day, and a second run seeds nothing."""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

from eth_account import Account
from sqlalchemy import func, select
from web3 import Web3

from ledger import accounts, analytics
from ledger import devices as devices_lib
from ledger.chain import LedgerClient, deploy
from ledger.db import session_scope
from ledger.gasless import GaslessRelayer
from ledger.identifiers import normalize_iswc
from ledger.indexer import Indexer
from ledger.ingest import IngestContext
from ledger.metadata import isrc_to_bytes12
from ledger.models import Device, License, Licensee, Play, SplitShare, Work
from ledger.mqtt import MqttIngest
from ledger.pending import CONFIRMED, PendingBatch
from ledger.relayer import Relayer
from tests.support import BUILD_DIR, MQTT_HOST, MQTT_PORT, ROOT, ensure_compiled, running_anvil

from .conftest import HttpIngestServer

SECRET = "demo-test-secret-" + "d" * 32
DAYS = 2


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_seeds_a_living_world_once(tmp_path, engine):
    demo = load_demo()
    ensure_compiled()
    # as scripts/run.sh starts a fresh demo devnet: its clock begins DAYS days back
    with running_anvil("--timestamp", str(int(time.time()) - DAYS * 86_400)) as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, w3.eth.accounts[0], BUILD_DIR)
        ingest = IngestContext.create(w3, deployment, engine)
        http = HttpIngestServer(ingest).start()
        prefix = f"test-{uuid.uuid4().hex[:12]}/plays"
        mqtt = MqttIngest(
            ingest, f"mqtt://{MQTT_HOST}:{MQTT_PORT}", topic_prefix=prefix, client_id=f"demo-{uuid.uuid4().hex[:8]}"
        )
        mqtt.start()
        relayer_account = Account.create()
        w3.provider.make_request("anvil_setBalance", [relayer_account.address, hex(10**20)])
        stop = threading.Event()
        relayer = threading.Thread(
            target=Relayer(w3, deployment, relayer_account, engine).run, kwargs={"stop": stop}, daemon=True
        )
        relayer.start()
        try:
            ctx = demo.Context(
                w3=w3,
                deployment=deployment,
                engine=engine,
                secret=SECRET,
                gasless=GaslessRelayer(w3, deployment, w3.eth.accounts[1], engine, 3_000_000),
                funder=w3.eth.accounts[2],
                endpoint=http.url,
                mqtt_url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
                topic_prefix=prefix,
                state=tmp_path / "demo",
                portal=f"http://127.0.0.1:{http.port}",
            )
            world = demo.seed(ctx, days=DAYS, quiet=True)
            Indexer(engine, w3, deployment, progress=False).run()
            check_world(demo, ctx, world)

            # once per devnet state: a second run finds the world and adds nothing
            with session_scope(engine) as s:
                batches = s.scalar(select(func.count()).select_from(PendingBatch))
                users = s.scalar(select(func.count()).select_from(accounts.User))
            assert demo.seeded(ctx)
            assert demo.seed(ctx, days=DAYS, quiet=True) == world
            client = LedgerClient(w3, deployment)
            assert client.total_works() == len(demo.WORKS)
            with session_scope(engine) as s:
                assert s.scalar(select(func.count()).select_from(PendingBatch)) == batches
                assert s.scalar(select(func.count()).select_from(accounts.User)) == users

            check_device_keeps_playing(ctx, world["devices"][0])
        finally:
            stop.set()
            relayer.join(30)
            mqtt.stop()
            http.stop()


def check_device_keeps_playing(ctx, device):
    """`demo.py play NAME` (what run.sh supervises) makes the device report new plays, and ends
    with its device on SIGTERM."""

    def stored() -> int:
        with session_scope(ctx.engine) as s:
            return s.scalar(
                select(func.count()).select_from(PendingBatch).where(PendingBatch.device == device["address"])
            )

    before = stored()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--state", str(ctx.state)]
        + ["play", device["name"], "--per-minute", "600", "--max-age", "1"],
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):
            if stored() > before or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert stored() > before, proc.stderr.read().decode() if proc.poll() is not None else "no new batch"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def check_world(demo, ctx, world):
    engine, w3 = ctx.engine, ctx.w3
    client = LedgerClient(w3, ctx.deployment)
    # the devnet's clock is back on the wall clock
    assert abs(w3.eth.get_block("latest")["timestamp"] - time.time()) < 600

    # log-ins: a 0600 file whose passwords open the accounts (made as the sign-up page makes them)
    logins = ctx.state / "logins.txt"
    assert stat.S_IMODE(os.stat(logins).st_mode) == 0o600
    passwords = demo.read_logins(ctx.state)
    assert sorted(passwords) == sorted(u.username for u in demo.USERS)
    users = {}
    for spec in demo.USERS:
        user = accounts.authenticate(engine, spec.username, passwords[spec.username])
        assert user is not None and sorted(user.role_set) == sorted(spec.roles)
        assert user.encrypted_key is not None  # a custodial key, as for a sign-up
        users[spec.username] = user.address

    with session_scope(engine) as s:
        # works: on chain and indexed, owned by their artists, with valid ISRC and ISWC
        works = {w.work_id: w for w in s.scalars(select(Work))}
        assert len(works) == len(demo.WORKS) == client.total_works()
        ids = {}
        for spec in demo.WORKS:
            work_id = int(client.works.functions.workIdByIsrc(isrc_to_bytes12(spec.isrc)).call())
            ids[spec.key] = work_id
            row = works[work_id]
            assert (row.title, row.isrc, row.owner) == (spec.title, spec.isrc, users[spec.owner])
            assert row.iswc == normalize_iswc(row.iswc)
            shares = {r.payee: r.bps for r in s.scalars(select(SplitShare).where(SplitShare.work_id == work_id))}
            assert shares == {users[name]: bps for name, bps in spec.split}
            assert client.terms_of(work_id, demo.METERED) == (spec.fee, spec.rate, demo.TERMS_DAYS * 86_400, True)
        # the label is a payee
        label_works = analytics.payee_work_ids(engine, users["northbeam"])
        assert len(label_works) == sum(1 for w in demo.WORKS if any(n == "northbeam" for n, _ in w.split)) >= 3

        # licensees: licenses (METERED) and escrow, on chain and in the index
        for spec in demo.LICENSEES:
            me = users[spec.username]
            held = {r.work_id for r in s.scalars(select(License).where(License.licensee == me))}
            assert held == {ids[k] for k in spec.licenses}
            for key in spec.licenses:
                assert client.license_of(me, ids[key], demo.METERED)[1] > time.time()
            row = s.scalars(select(Licensee).where(Licensee.address == me)).one()
            assert row.escrow_deposited == spec.escrow
            assert client.escrow_of(me) == spec.escrow - row.escrow_charged
            assert row.escrow_charged > 0

        # devices: registered by their licensees in three territories, provisioned
        devices = {d.address: d for d in s.scalars(select(Device))}
        assert {d.territory for d in devices.values()} == {spec.territory for spec in demo.DEVICES}
        for spec, info in zip(demo.DEVICES, world["devices"], strict=True):
            row = devices[info["address"]]
            assert row.licensee == users[spec.licensee] and not row.revoked
            assert client.device_id_of(info["address"]) == int(info["deviceId"]) == row.device_id
            prov = ctx.state / "devices" / spec.name / "provisioning.json"
            assert stat.S_IMODE(os.stat(prov).st_mode) == 0o600
            licensee = accounts.find_user(engine, spec.licensee)
            named = devices_lib.portal_rows(engine, licensee.id, info["address"])
            assert [(r.name, r.device_id) for r in named] == [(spec.name, row.device_id)]

        # every play of the backlog went through ingest (HTTP and MQTT) and the relayer into the index
        sent = Counter()
        for spec in demo.DEVICES:
            for csv in (ctx.state / "devices" / spec.name / "history").glob("*.csv"):
                for line in csv.read_text().splitlines()[1:]:
                    sent[int(line.split(",")[1])] += 1
        indexed = Counter()
        for work_id, count in s.execute(select(Play.work_id, func.sum(Play.count)).group_by(Play.work_id)):
            indexed[work_id] = int(count)
        assert sum(sent.values()) > 0 and indexed == sent
        sources = {b.source for b in s.scalars(select(PendingBatch))}
        assert sources == {"http", "mqtt"}
        assert {b.status for b in s.scalars(select(PendingBatch))} == {CONFIRMED}

    # the charts have data on more than one day
    days = analytics.plays_over_time(engine, [ids["glass-harbour"], ids["paper-lanterns"]], "day")
    assert len([p for p in days if p.plays]) >= 2
    assert sum(p.earnings for p in days) > 0
