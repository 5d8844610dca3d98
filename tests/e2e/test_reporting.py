"""A device reports plays over HTTP and MQTT; after the relayer the chain holds exactly them."""

import collections
import time

from ledger.pending import CONFIRMED

from .conftest import assert_chain_matches, assert_index_matches, relayer_for, stored, write_plays


def _plays(world, n, start=None):
    """n plays over the three works (work 3 is unlicensed), oldest first."""
    start = start or int(time.time()) - 3600
    works = world.works
    return [(start + i * 3000 // n, works[(i * 7) % 5 % 3]) for i in range(n)]


def test_http_device_reports_plays_end_to_end(world, engine, http_server, new_device, tmp_path):
    device = new_device("http", endpoint=http_server.url)
    plays = _plays(world, 2_500)
    device.cmd("replay", write_plays(tmp_path / "plays.csv", plays), "--batch-size", 1000)
    for work in world.works[:2]:
        device.cmd("play", "--work", work)
    device.cmd("flush")
    assert device.status()["spooledBatches"] == 0

    rows = stored(engine)
    assert sorted(r.nonce for r in rows) == [0, 1, 2, 3]
    assert sum(r.plays for r in rows) == 2_502
    relayer_for(world, engine).run(once=True)

    assert {r.status for r in stored(engine)} == {CONFIRMED}
    counts = collections.Counter(w for _, w in plays)
    for work in world.works[:2]:
        counts[work] += 1
    assert_index_matches(world, engine, counts)
    assert_chain_matches(world, counts)


def test_mqtt_device_reports_plays_end_to_end(world, engine, mqtt_consumer_factory, new_device, tmp_path):
    mqtt_consumer_factory(engine)
    device = new_device("mqtt")
    plays = _plays(world, 1_200)
    device.cmd("replay", write_plays(tmp_path / "plays.csv", plays), "--batch-size", 500)
    assert device.status()["spooledBatches"] == 0
    rows = stored(engine)
    assert sorted((r.nonce, r.source) for r in rows) == [(0, "mqtt"), (1, "mqtt"), (2, "mqtt")]

    relayer_for(world, engine).run(once=True)

    assert {r.status for r in stored(engine)} == {CONFIRMED}
    assert_index_matches(world, engine, collections.Counter(w for _, w in plays))
    assert_chain_matches(world, collections.Counter(w for _, w in plays))


def test_run_daemon_seals_by_size_and_by_age(world, sqlite_engine, new_device):
    import subprocess
    import sys

    from .conftest import DEVICE_SCRIPT, HttpIngestServer, make_ctx, stored_count

    server = HttpIngestServer(make_ctx(world, sqlite_engine)).start()
    try:
        device = new_device("http", endpoint=server.url)
        proc = subprocess.Popen(
            [
                sys.executable,
                str(DEVICE_SCRIPT),
                "--state",
                str(device.state),
                "--quiet",
                "run",
                "--stdin",
                "--exit-on-eof",
                "--batch-size",
                "5",
                "--max-age",
                "1",
                "--poll",
                "0.05",
            ],
            stdin=subprocess.PIPE,
            text=True,
        )
        for i in range(12):
            proc.stdin.write(f"{world.works[i % 2]}\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while stored_count(sqlite_engine) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(r.plays for r in stored(sqlite_engine)) == [2, 5, 5]  # two full, one by age
        proc.stdin.close()
        assert proc.wait(15) == 0
    finally:
        server.stop()
    relayer_for(world, sqlite_engine).run(once=True)
    assert_chain_matches(world, {world.works[0]: 6, world.works[1]: 6})
