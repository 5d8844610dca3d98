"""Outages, crashes and duplicates: nothing lost, nothing counted twice."""

import collections
import json
import signal
import time

import pytest
import requests
from eth_account import Account
from sqlalchemy import func, select

from ledger import playbatch
from ledger.db import session_factory
from ledger.ingest import ingest_batch
from ledger.pending import CONFIRMED, INFLIGHT, PENDING, RelayTransaction

from .conftest import (
    HttpIngestServer,
    assert_chain_matches,
    assert_index_matches,
    free_port,
    make_ctx,
    relayer_for,
    signed_payload,
    stored,
    stored_count,
    write_plays,
)


class Crash(BaseException):
    """Stands for the relayer process dying at this point (not an Exception: nothing catches it)."""


def _plays(world, n, seed=1):
    start = int(time.time()) - 7200
    return [(start + i * 7000 // n, world.works[(i * seed + i // 3) % 3]) for i in range(n)]


def _stored_plays(engine) -> collections.Counter:
    counts = collections.Counter()
    for row in stored(engine):
        for work, count in playbatch.decode_entries(row.entries):
            counts[work] += count
    return counts


def _wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------- outages


def test_http_server_down_device_spools_then_delivers(world, sqlite_engine, new_device, tmp_path):
    server = HttpIngestServer(make_ctx(world, sqlite_engine))  # not started: the portal is down
    device = new_device("http", endpoint=server.url)
    plays = _plays(world, 1_500)
    result = device.cmd("replay", write_plays(tmp_path / "p.csv", plays), "--batch-size", 500, "--no-wait")
    device.cmd("play", "--work", world.works[0])
    device.cmd("flush")
    status = device.status()
    assert (status["spooledBatches"], status["spooledPlays"]) == (4, 1_501), result.stderr
    assert stored_count(sqlite_engine) == 0

    server.start()
    try:
        device.cmd("flush")
    finally:
        server.stop()
    assert device.status()["spooledBatches"] == 0
    expected = collections.Counter(w for _, w in plays)
    expected[world.works[0]] += 1
    assert _stored_plays(sqlite_engine) == expected
    relayer_for(world, sqlite_engine).run(once=True)
    assert_chain_matches(world, expected)


def test_mqtt_broker_unreachable_device_spools_then_delivers(
    world, sqlite_engine, mqtt_consumer_factory, new_device, tmp_path
):
    device = new_device("mqtt", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")  # nobody listens there
    plays = _plays(world, 900, seed=2)
    device.cmd("replay", write_plays(tmp_path / "p.csv", plays), "--batch-size", 300, "--no-wait")
    assert device.status()["spooledBatches"] == 3
    assert stored_count(sqlite_engine) == 0

    mqtt_consumer_factory(sqlite_engine)
    device.provision(world, "mqtt", mqtt_url="mqtt://127.0.0.1:1883")  # the broker is back
    device.cmd("flush")
    assert device.status()["spooledBatches"] == 0
    assert _stored_plays(sqlite_engine) == collections.Counter(w for _, w in plays)
    relayer_for(world, sqlite_engine).run(once=True)
    assert_chain_matches(world, collections.Counter(w for _, w in plays))


def test_mqtt_consumer_down_broker_keeps_batches_and_resend_is_idempotent(
    world, sqlite_engine, mqtt_consumer_factory, new_device, tmp_path
):
    client_id = f"e2e-persistent-{time.time_ns()}"
    mqtt_consumer_factory(sqlite_engine, client_id=client_id).stop()  # subscribed once, then down
    device = new_device("mqtt")
    plays = _plays(world, 400, seed=3)
    write_plays(tmp_path / "p.csv", plays)
    proc = device.cmd("--timeout", "1", "replay", tmp_path / "p.csv", "--batch-size", 200, "--no-wait")
    assert device.status()["spooledBatches"] == 2, proc.stderr  # published, never acknowledged

    mqtt_consumer_factory(sqlite_engine, client_id=client_id)  # the broker hands over what it kept
    _wait_for(lambda: stored_count(sqlite_engine) == 2, what="queued batches to be ingested")
    device.cmd("flush")  # the resend gets the same answers
    assert device.status()["spooledBatches"] == 0
    assert stored_count(sqlite_engine) == 2
    relayer_for(world, sqlite_engine).run(once=True)
    assert_chain_matches(world, collections.Counter(w for _, w in plays))


def test_device_killed_mid_replay_loses_and_doubles_nothing(world, sqlite_engine, new_device, tmp_path):
    server = HttpIngestServer(make_ctx(world, sqlite_engine)).start()
    try:
        device = new_device("http", endpoint=server.url)
        plays = _plays(world, 30_000, seed=5)
        log = write_plays(tmp_path / "p.csv", plays)
        proc = device.popen("replay", log, "--batch-size", 100)
        _wait_for(lambda: stored_count(sqlite_engine) >= 5, what="the first batches")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert stored_count(sqlite_engine) < 300, "the replay finished before it was killed"
        resumed = device.cmd("replay", log, "--batch-size", 100)  # resumes where the spool says it stopped
        device.cmd("flush")
    finally:
        server.stop()
    status = device.status()
    assert status["spooledBatches"] == 0
    assert _stored_plays(sqlite_engine) == collections.Counter(w for _, w in plays), (
        json.dumps(status),
        resumed.stderr,
    )


# ----------------------------------------------------------------------------- relayer crashes


def _ingest_direct(world, engine, n_batches=3, plays_per_work=7):
    """Registers a device and stores n signed batches through ingest; returns the play counts."""
    account = Account.create()
    world.licensee.register_device(account.address, "FR", world.licensee.device_proof(account))
    ctx = make_ctx(world, engine)
    expected = collections.Counter()
    for nonce in range(n_batches):
        counts = {world.works[0]: plays_per_work + nonce, world.works[2]: 2}
        ingest_batch(signed_payload(account, world, nonce, counts), ctx)
        expected.update(counts)
    return expected


def test_relayer_killed_after_sending_before_marking_counts_once(world, engine, monkeypatch):
    expected = _ingest_direct(world, engine)
    relayer = relayer_for(world, engine)
    monkeypatch.setattr(relayer, "_settle", lambda *a: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        relayer.relay_once()
    assert {r.status for r in stored(engine)} == {INFLIGHT}
    assert world.admin.plays_of(world.works[0]) == expected[world.works[0]]  # the chain applied it

    reports = relayer_for(world, engine).run(once=True)  # a new process: reconcile, then relay
    assert [r.confirmed for r in reports] == [3]
    assert {r.status for r in stored(engine)} == {CONFIRMED}
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(RelayTransaction)) == 1
    assert_chain_matches(world, expected)


def test_relayer_killed_before_broadcast_sends_the_recorded_transaction(world, sqlite_engine, monkeypatch):
    expected = _ingest_direct(world, sqlite_engine)
    relayer = relayer_for(world, sqlite_engine)
    monkeypatch.setattr(relayer, "_broadcast", lambda raw: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        relayer.relay_once()
    assert world.admin.plays_of(world.works[0]) == 0

    relayer_for(world, sqlite_engine).run(once=True)
    assert {r.status for r in stored(sqlite_engine)} == {CONFIRMED}
    assert_chain_matches(world, expected)


def test_relayer_killed_while_its_transaction_was_replaced_repends_and_relays(world, sqlite_engine, monkeypatch):
    expected = _ingest_direct(world, sqlite_engine)
    w3 = world.w3
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        relayer = relayer_for(world, sqlite_engine)
        monkeypatch.setattr(relayer, "_await", lambda rtx_id: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            relayer.relay_once()
        # the relayer key's operator replaces the stuck transaction (same account nonce)
        with session_factory(sqlite_engine)() as s:
            rtx = s.scalars(select(RelayTransaction)).one()
        acct = world.relayer_account
        block = w3.eth.get_block("latest")
        tip = 50 * 10**9
        replacement = acct.sign_transaction(
            {
                "to": acct.address,
                "value": 0,
                "gas": 21_000,
                "nonce": rtx.tx_nonce,
                "chainId": w3.eth.chain_id,
                "maxPriorityFeePerGas": tip,
                "maxFeePerGas": 4 * block["baseFeePerGas"] + tip,
            }
        )
        w3.eth.send_raw_transaction(replacement.raw_transaction)
        w3.provider.make_request("anvil_dropTransaction", [rtx.hashes[0]])
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert world.admin.plays_of(world.works[0]) == 0

    relayer_for(world, sqlite_engine).run(once=True)  # settles from chain state: unused nonces -> relay
    rows = stored(sqlite_engine)
    assert {r.status for r in rows} == {CONFIRMED}
    assert all(r.attempts == 2 for r in rows)
    assert_chain_matches(world, expected)


# ----------------------------------------------------------------------------- duplicates, escrow, packing


def test_same_batch_sent_twice_is_stored_once_and_counted_once(world, engine, http_server):
    account = Account.create()
    world.licensee.register_device(account.address, "US", world.licensee.device_proof(account))
    payload = signed_payload(account, world, 0, {world.works[0]: 11, world.works[1]: 4})
    first = requests.post(http_server.url, json=payload, timeout=10)
    second = requests.post(http_server.url, json=payload, timeout=10)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json()
    assert stored_count(engine) == 1

    relayer_for(world, engine).run(once=True)
    third = requests.post(http_server.url, json=payload, timeout=10)  # after it is on chain
    assert (third.status_code, third.json()) == (202, first.json())
    relayer_for(world, engine).run(once=True)
    assert stored_count(engine) == 1
    assert_chain_matches(world, {world.works[0]: 11, world.works[1]: 4})


def test_unpayable_batch_waits_in_pending_until_escrow_is_topped_up(world, sqlite_engine):
    expected = _ingest_direct(world, sqlite_engine, n_batches=1, plays_per_work=5)
    escrow = world.admin.escrow_of(world.licensee.address)
    # 1 play's worth left; the batch costs 5. A withdrawal needs notice: ask, wait it out, withdraw.
    available_at = world.licensee.request_escrow_withdrawal(escrow - 1_000)
    world.w3.provider.make_request("evm_mine", [available_at])
    world.licensee.withdraw_escrow(escrow - 1_000)
    relayer_for(world, sqlite_engine).run(once=True)
    (row,) = stored(sqlite_engine)
    assert (row.status, row.reason) == (PENDING, "InsufficientEscrow")
    assert world.admin.plays_of(world.works[0]) == 0

    world.licensee.deposit(escrow - 1_000)
    relayer_for(world, sqlite_engine, escrow_retry_after=0).run(once=True)
    (row,) = stored(sqlite_engine)
    assert row.status == CONFIRMED
    assert_chain_matches(world, expected)


def test_relayer_splits_packs_by_calldata_size_and_gas_cap(world, sqlite_engine):
    accounts = [Account.create() for _ in range(2)]
    for account in accounts:
        world.licensee.register_device(account.address, "DE", world.licensee.device_proof(account))
    ctx = make_ctx(world, sqlite_engine)
    expected = collections.Counter()
    for nonce in range(30):
        for account in accounts:
            counts = {world.works[0]: 1 + nonce, world.works[1]: 2, world.works[2]: 3}
            ingest_batch(signed_payload(account, world, nonce, counts), ctx)
            expected.update(counts)
    max_bytes, gas_cap = 2_000, 700_000
    reports = relayer_for(world, sqlite_engine, max_input_bytes=max_bytes, gas_cap=gas_cap).run(once=True)
    assert len(reports) >= 4
    assert all(r.calldata <= max_bytes and 0 < r.gas_used <= gas_cap for r in reports)
    with session_factory(sqlite_engine)() as s:
        txs = list(s.scalars(select(RelayTransaction)))
    assert all(t.calldata_size <= max_bytes and t.gas_limit <= gas_cap for t in txs)
    assert sum(r.confirmed for r in reports) == 60
    assert {r.status for r in stored(sqlite_engine)} == {CONFIRMED}
    assert_chain_matches(world, expected)


def test_a_predicted_gas_limit_too_low_runs_out_of_gas_and_every_batch_lands_once(world, engine):
    """The relayer predicts a pack's gas from the last receipt instead of estimating it. A
    prediction far too low (forced here) sends a transaction that runs out of gas: it applies
    nothing, its batches go back to pending, the next pack is estimated, and every batch lands
    exactly once, on the chain and in the index."""
    from ledger.relayer.packer import GasModel

    account = Account.create()
    world.licensee.register_device(account.address, "DE", world.licensee.device_proof(account))
    ctx = make_ctx(world, engine)
    expected = collections.Counter()
    for nonce in range(40):
        counts = {world.works[0]: 1 + nonce % 5, world.works[1]: 2, world.works[2]: 3}
        ingest_batch(signed_payload(account, world, nonce, counts), ctx)
        expected.update(counts)
    relayer = relayer_for(world, engine, gas_cap=200_000)  # about 17 of these batches a transaction
    first = relayer.relay_once()  # no model yet: estimated; its receipt becomes the model
    assert first is not None and first.confirmed == first.batches > 0, first
    assert first.batches < 40, first
    assert relayer.packer.model is not None and not relayer.packer.must_estimate
    model = relayer.packer.model
    relayer.packer.model = GasModel(model.per_batch / 3, model.per_entry / 3)
    out_of_gas = relayer.relay_once()
    assert out_of_gas is not None and relayer.packer.predicted
    assert out_of_gas.reverted and out_of_gas.gas_used > 0  # mined, and out of gas
    with session_factory(engine)() as s:
        oog_tx = s.scalars(select(RelayTransaction).where(RelayTransaction.gas_used == out_of_gas.gas_used)).one()
        assert oog_tx.gas_limit == out_of_gas.gas_used  # it used all the gas it had
    assert relayer.packer.must_estimate
    rest = relayer.run(once=True)
    assert rest and not rest[0].reverted and sum(r.confirmed for r in (first, out_of_gas, *rest)) == 40
    assert {r.status for r in stored(engine)} == {CONFIRMED}
    assert_chain_matches(world, expected)
    assert_index_matches(world, engine, expected)


@pytest.mark.parametrize("depth", [1, 5])
def test_batches_whose_transaction_left_the_chain_are_relayed_again(world, engine, depth):
    """The relayer confirmed a batch; then the chain lost that block (a reorg, or a devnet that
    came back from an older state). The batch goes back to pending and is relayed again, once."""
    from ledger.indexer import Indexer

    expected = _ingest_direct(world, engine, n_batches=1)
    indexer = Indexer(engine, world.w3, world.deployment, progress=False)
    indexer.run()
    common = world.w3.eth.block_number
    snap = world.w3.provider.make_request("evm_snapshot", [])["result"]
    relayer = relayer_for(world, engine)
    relayer.run(once=True)
    (row,) = stored(engine)
    assert row.status == CONFIRMED
    for _ in range(depth - 1):  # more blocks after it, all to be lost
        world.w3.provider.make_request("evm_mine", [])
    indexer.run()  # the index sees the plays, in blocks about to be lost
    lost_clock = world.w3.eth.get_block("latest")["timestamp"]
    assert world.w3.provider.make_request("evm_revert", [snap])["result"]
    assert all(world.admin.plays_of(w) == 0 for w in expected)  # the chain forgot the plays
    # The same transaction mined again in the same second would make a byte-identical block (same
    # hash: no reorg to see, and none to correct); the new chain's clock moves on, as it would.
    world.w3.provider.make_request("evm_setNextBlockTimestamp", [lost_clock + 1])
    assert relayer.recheck_confirmed() == 1
    assert stored(engine)[0].status == PENDING
    relayer.run(once=True)
    assert stored(engine)[0].status == CONFIRMED
    assert relayer.recheck_confirmed() == 0
    seen = indexer.checkpoint().block_number
    stats = indexer.run()  # the index drops the lost blocks' plays (back to the common block only) ...
    assert stats.rollbacks == [(seen, common)]
    assert_chain_matches(world, dict(expected))
    assert_index_matches(world, engine, dict(expected))  # ... and counts the relayed ones once


def _ingest_ahead_of_the_chain_clock(world, engine, ahead: int, span: int, counts: dict[int, int]) -> int:
    """Stores one batch of a new device whose toTime is ``ahead`` seconds past the latest block's
    clock + the contract's skew (the device's and the server's clocks are ahead of the chain's).
    Returns the latest block's timestamp."""
    account = Account.create()
    world.licensee.register_device(account.address, "FR", world.licensee.device_proof(account))
    ctx = make_ctx(world, engine)
    latest = world.w3.eth.get_block("latest")["timestamp"]
    to_time = latest + ctx.skew() + ahead
    ctx.clock = lambda: to_time
    ingest_batch(signed_payload(account, world, 0, counts, from_time=to_time - span, to_time=to_time), ctx)
    return latest


def _relay_transactions(engine) -> list:
    from ledger.pending import RelayTransaction

    with session_factory(engine)() as s:
        return list(s.scalars(select(RelayTransaction)))


def test_a_batch_ahead_of_the_chain_clock_is_estimated_as_it_will_apply(world, engine):
    """A batch whose toTime is ahead of the latest block's clock (+ the contract's skew) would be
    skipped in that block (cheap) but applies in the next one, whose clock has moved on. The
    relayer's gas must be for applying it: one transaction, mined without running out of gas."""
    counts = {world.works[0]: 40, world.works[1]: 30}
    latest = _ingest_ahead_of_the_chain_clock(world, engine, ahead=60, span=600, counts=counts)
    before = {w: world.admin.plays_of(w) for w in counts}
    world.w3.provider.make_request("evm_setNextBlockTimestamp", [latest + 120])  # the next block's clock
    relayer_for(world, engine).run(once=True)
    assert [r.status for r in stored(engine)] == [CONFIRMED]
    txs = _relay_transactions(engine)
    assert len(txs) == 1  # no reverted transaction re-packed: no gas wasted
    receipt = world.w3.eth.get_transaction_receipt(txs[0].mined_tx_hash)
    assert receipt["status"] == 1
    assert {w: world.admin.plays_of(w) - before[w] for w in counts} == counts


def test_a_batch_past_the_chain_clock_waits_pending_until_the_clock_reaches_it(world, engine):
    """A batch whose toTime is beyond even the pending block's clock + skew would be skipped there:
    the relayer holds it (pending, nothing sent) until the chain's clock has moved on."""
    latest = _ingest_ahead_of_the_chain_clock(world, engine, ahead=600, span=60, counts={world.works[0]: 5})
    relayer = relayer_for(world, engine)
    relayer.run(once=True)
    assert [r.status for r in stored(engine)] == [PENDING]  # held: the chain's clock is behind it
    assert _relay_transactions(engine) == []
    world.w3.provider.make_request("evm_setNextBlockTimestamp", [latest + 600])
    relayer.run(once=True)
    assert [r.status for r in stored(engine)] == [CONFIRMED]
    (tx,) = _relay_transactions(engine)
    assert world.w3.eth.get_transaction_receipt(tx.mined_tx_hash)["status"] == 1
