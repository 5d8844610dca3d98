"""Quick local throughput run of the device -> ingest -> relayer path (not a test; no timings are
asserted anywhere). Starts its own Anvil, deploys, registers WORKS works and DEVICES devices,
then each device replays PLAYS plays (CSV) through scripts/device.py over HTTP (the e2e Flask
ingest server) or MQTT (ledger.mqtt consumer), and the relayer puts everything on chain.

    python tests/e2e/bench_ingest.py --devices 4 --plays 100000 --transport http [--database-url URL]

Prints plays/s accepted (device start -> last ack) and plays/s confirmed on chain (relayer).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e import conftest as c  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--plays", type=int, default=100_000, help="plays per device")
    p.add_argument("--works", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--transport", choices=["http", "mqtt"], default="http")
    p.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    args = p.parse_args()

    from eth_account import Account

    from ledger.chain import LedgerClient, LicenseKind, deploy
    from ledger.db import make_engine, upgrade
    from ledger.relayer import Relayer

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with c.running_anvil() as w3:
        admin_addr, licensee_addr = w3.eth.accounts[:2]
        deployment = deploy(w3, admin_addr, c.BUILD)
        admin = LedgerClient(w3, deployment, admin_addr)
        licensee = admin.as_account(licensee_addr)
        payees = [Account.create().address for _ in range(3)]
        works = []
        for i in range(args.works):
            work = admin.register_work(title=f"Bench {i}")
            admin.set_split(work, payees, c.BPS, current=([], []))
            admin.set_terms(work, LicenseKind.METERED, 0, c.RATE, 365 * 86400)
            works.append(work)
        total = args.devices * args.plays
        admin.mint(licensee_addr, total * c.RATE * 2)
        licensee.buy_licenses(works, LicenseKind.METERED, 0, c.RATE)
        licensee.deposit(total * c.RATE * 2)
        relayer_account = Account.create()
        w3.provider.make_request("anvil_setBalance", [relayer_account.address, hex(10**21)])
        world = c.World(w3, deployment, admin, licensee, works, payees, relayer_account)

        engine = make_engine(args.database_url or f"sqlite:///{tmp / 'ledger.sqlite3'}")
        upgrade(engine)
        server = consumer = None
        if args.transport == "http":
            server = c.HttpIngestServer(c.make_ctx(world, engine)).start()
        else:
            from ledger.mqtt import MqttIngest

            consumer = MqttIngest(
                c.make_ctx(world, engine), "mqtt://127.0.0.1:1883", client_id=f"bench-{time.time_ns()}"
            )
            consumer.start()
        devices = []
        start_ts = int(time.time()) - 86_400
        for i in range(args.devices):
            dev = c.DeviceProc(tmp / f"dev{i}")
            dev.state.mkdir()
            dev.address = dev.cmd("keygen").stdout.strip()
            proof = dev.cmd(
                "register-proof",
                "--licensee",
                licensee.address,
                "--ledger",
                deployment.ledger.address,
                "--chain-id",
                str(deployment.chain_id),
            ).stdout.strip()
            dev.device_id = licensee.register_device(dev.address, "GB", bytes.fromhex(proof[2:]))
            dev.provision(world, args.transport, server.url if server else "", "mqtt://127.0.0.1:1883")
            plays = [
                (start_ts + j * 80_000 // args.plays, works[(j * 7 + j // 13) % len(works)]) for j in range(args.plays)
            ]
            c.write_plays(dev.state / "plays.csv", plays)
            devices.append(dev)

        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(c.DEVICE_SCRIPT),
                    "--state",
                    str(d.state),
                    "--quiet",
                    "replay",
                    str(d.state / "plays.csv"),
                    "--batch-size",
                    str(args.batch_size),
                ]
            )
            for d in devices
        ]
        codes = [pr.wait() for pr in procs]
        t1 = time.monotonic()
        stored = c.stored(engine)
        accepted = sum(r.plays for r in stored)
        print(
            f"devices={args.devices} plays/device={args.plays} batch={args.batch_size} "
            f"transport={args.transport} db={engine.url.get_backend_name()} exit codes={set(codes)}"
        )
        print(
            f"accepted: {accepted} plays in {len(stored)} batches, {t1 - t0:.2f} s -> "
            f"{accepted / (t1 - t0):,.0f} plays/s, {len(stored) / (t1 - t0):,.1f} batches/s"
        )

        relayer = Relayer(w3, deployment, relayer_account, engine)
        t2 = time.monotonic()
        reports = relayer.run(once=True)
        t3 = time.monotonic()
        confirmed = sum(r.plays for r in reports if not r.reverted and r.confirmed)
        gas = sum(r.gas_used for r in reports)
        print(
            f"relayed: {len(reports)} txs, {sum(r.confirmed for r in reports)} batches confirmed, "
            f"{t3 - t2:.2f} s -> {confirmed / (t3 - t2):,.0f} plays/s; gas/play {gas / max(confirmed, 1):.1f}; "
            f"largest tx {max(r.calldata for r in reports)} bytes, {max(r.gas_used for r in reports)} gas"
        )
        print(f"end to end: {confirmed / (t3 - t0):,.0f} plays/s")
        counts = collections.Counter()
        for d in devices:
            for line in (d.state / "plays.csv").read_text().splitlines()[1:]:
                counts[int(line.split(",")[1])] += 1
        on_chain = {w: admin.plays_of(w) for w in works}
        print("chain play counts match the logs:", on_chain == dict(counts))
        if server:
            server.stop()
        if consumer:
            consumer.stop()
        return 0 if on_chain == dict(counts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
