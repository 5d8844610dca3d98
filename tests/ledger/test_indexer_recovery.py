"""The indexer survives crashes, never writes a row twice, rebuilds identically, and follows."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select, update
from web3 import Web3

from ledger.chain import LedgerClient, deploy
from ledger.cli import main
from ledger.db import make_engine, upgrade
from ledger.errors import ReorgDetectedError
from ledger.indexer import Indexer
from ledger.models import IndexerCheckpoint, Play, Work
from ledger.playbatch import Group, encode_entries, encode_submission, sign_batch, sorted_split

from ledger_helpers import all_statements_csv, index, play_count, table_snapshot
from ledger_history import METERED, USD, build_history
from tests.support import BUILD_DIR, running_anvil

GENESIS = 1788220800  # as in conftest: the scripted history runs October to December 2026


class Boom(RuntimeError):
    pass


def _failing_after(rows_allowed: int):
    """An Indexer whose bulk writes raise once `rows_allowed` rows have been written."""
    written = {"rows": 0, "armed": True}

    class Failing(Indexer):
        def _write_rows(self, conn, table, rows):
            self._count(len(rows))
            super()._write_rows(conn, table, rows)

        def _write_plays(self, conn, rows):
            super()._write_plays(conn, rows)  # the rows are in the transaction when it fails
            self._count(len(rows))

        def _count(self, n):
            written["rows"] += n
            if written["armed"] and written["rows"] > rows_allowed:
                written["armed"] = False
                raise Boom(f"killed after {written['rows']} rows")

    return Failing


@pytest.fixture
def reference(tmp_path, w3, deployment, history):
    """A clean index of the whole history on SQLite, to compare against."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    upgrade(engine)
    index(engine, w3, deployment)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("rows_allowed", [0, 7, 40, 90])
def test_killed_mid_range_then_rerun_loses_and_duplicates_nothing(
    engine, w3, deployment, history, reference, rows_allowed
):
    failing = _failing_after(rows_allowed)(engine, w3, deployment, block_range=8, progress=False)
    with pytest.raises(Boom):
        failing.run()
    before = engine.connect()
    checkpoint = before.execute(select(IndexerCheckpoint.block_number)).scalar_one()
    before.close()
    assert checkpoint < w3.eth.block_number  # it stopped part way
    index(engine, w3, deployment, block_range=8)
    assert table_snapshot(engine) == table_snapshot(reference)
    assert all_statements_csv(engine, history) == all_statements_csv(reference, history)


def test_a_crashed_indexer_object_can_carry_on(engine, w3, deployment, history, reference):
    """The same Indexer object retries after a failure without reusing half-applied state."""
    failing = _failing_after(25)(engine, w3, deployment, block_range=5, progress=False)
    with pytest.raises(Boom):
        failing.run()
    failing.run()
    assert table_snapshot(engine) == table_snapshot(reference)


def test_writing_a_range_twice_fails_instead_of_duplicating(engine, w3, deployment, history):
    index(engine, w3, deployment)
    plays = play_count(engine)
    assert plays > 0
    head = w3.eth.block_number
    with engine.begin() as conn:  # pretend the checkpoint was lost: the next run re-reads committed blocks
        conn.execute(update(IndexerCheckpoint).values(block_number=deployment.deploy_block - 1, block_hash=None))
    with pytest.raises(Exception) as info:
        index(engine, w3, deployment, block_range=head)
    assert "unique" in str(info.value).lower() or "duplicate" in str(info.value).lower()
    assert play_count(engine) == plays


def test_rebuild_gives_identical_statement_bytes(cli_env, w3, deployment, history):
    engine = make_engine(cli_env)
    assert main(["db", "upgrade"]) == 0
    assert main(["index", "--block-range", "7"]) == 0
    first = all_statements_csv(engine, history)
    snapshot = table_snapshot(engine)
    assert b"Blue Harbour" in first
    assert main(["index", "--rebuild", "--block-range", "1000"]) == 0
    assert all_statements_csv(engine, history) == first
    assert table_snapshot(engine) == snapshot
    engine.dispose()


def test_confirmations_hold_back_the_newest_blocks(engine, w3, deployment, history):
    stats = index(engine, w3, deployment, confirmations=5)
    assert stats.to_block == w3.eth.block_number - 5
    with engine.connect() as conn:
        assert conn.execute(select(IndexerCheckpoint.block_number)).scalar_one() == w3.eth.block_number - 5
    stats = index(engine, w3, deployment, confirmations=0)
    assert stats.from_block == w3.eth.block_number - 4


def test_follow_picks_up_new_blocks(engine, w3, deployment, client, history, chain_snapshot):
    indexer = Indexer(engine, w3, deployment, progress=False)
    indexer.run()
    loops = []

    def should_stop():
        loops.append(1)
        if len(loops) == 2:  # after the first pass, add a work on the chain
            client.as_account(history.accounts["shop"]).register_work(title="Shop Jingle")
        return len(loops) > 3

    indexer.follow(poll_interval=0, should_stop=should_stop)
    from ledger.models import Work

    with engine.connect() as conn:
        titles = set(conn.execute(select(Work.title)).scalars())
    assert "Shop Jingle" in titles


def test_a_checkpoint_off_the_chain_is_detected(engine, w3, deployment, history):
    index(engine, w3, deployment)
    with engine.begin() as conn:
        conn.execute(update(IndexerCheckpoint).values(block_hash="0x" + "ab" * 32))
    with pytest.raises(ReorgDetectedError):
        Indexer(engine, w3, deployment, progress=False, rebuild_on_reorg=False).run()
    with engine.begin() as conn:
        conn.execute(update(IndexerCheckpoint).values(block_hash=None))
    before = table_snapshot(engine)
    with engine.begin() as conn:
        conn.execute(update(IndexerCheckpoint).values(block_hash="0x" + "ab" * 32))
    index(engine, w3, deployment)  # by default it rolls back and indexes the chain as it is
    after = table_snapshot(engine)
    assert {k: v for k, v in after.items() if k != "indexer_checkpoint"} == {
        k: v for k, v in before.items() if k != "indexer_checkpoint"
    }


def _titles(engine) -> list[str]:
    from ledger.models import Work

    with engine.connect() as conn:
        return sorted(t or "" for t in conn.execute(select(Work.title)).scalars())


# ---------------------------------------------------------------------------------------- reorgs
_NONCES = itertools.count(1_000_000)


def _send_in_one_block(w3, calls) -> int:
    """Sends [(sender, contract function)] as the transactions of ONE new block (automine off, then
    evm_mine); every one must succeed. Returns the block number."""
    assert w3.provider.make_request("evm_setAutomine", [False]).get("error") is None
    try:
        nonces: dict[str, int] = {}
        hashes = []
        for sender, fn in calls:
            nonce = nonces.get(sender, w3.eth.get_transaction_count(sender, "pending"))
            nonces[sender] = nonce + 1
            tx = fn.build_transaction({"from": sender, "gas": 3_000_000, "nonce": nonce})
            hashes.append(w3.eth.send_transaction(tx))
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]
    assert [r["status"] for r in receipts] == [1] * len(receipts)
    assert len({r["blockNumber"] for r in receipts}) == 1
    return receipts[0]["blockNumber"]


def _batch_call(client, history, device: str, counts: dict[str, int]):
    """submitBatches of one signed batch of `device` (a fresh nonce) with plays {work name: count}."""
    w3 = client.w3
    device_id, key = history.devices[device]
    nonce = next(_NONCES)  # nonces are unordered: any unused one will do
    now = w3.eth.get_block("latest")["timestamp"]
    entries = encode_entries({history.works[w]: c for w, c in counts.items()})
    batch = sign_batch(key, w3.eth.chain_id, client.deployment.ledger.address, nonce, now - 600, now - 60, entries)
    group = Group(device_id >> 32)
    group.batches.append((device_id & 0xFFFFFFFF, batch))
    return client.ledger.functions.submitBatches(encode_submission([group]))


def _lost_branch(client, history, depth: int) -> None:
    """`depth` blocks, each with plays (licensed and not), a license bought again (its fee accrues),
    a distribution and a withdrawal; the first also a split change (which distributes first), a
    deposit, a new work and a URI change; the last a locked split and a revoked device."""
    w3, a, w = client.w3, history.accounts, history.works
    artist, label, venue = (client.as_account(a[n]) for n in ("artist", "label", "venue"))
    for i in range(depth):
        calls = [
            (a["venue"], _batch_call(client, history, "gb1", {"harbour": 5 + i, "anthem": 3, "lullaby": 2})),
            (a["venue"], venue.ledger.functions.buyLicense(w["anthem"], int(METERED), USD, 1001, 0)),
            (
                a["label"],
                label.ledger.functions.distribute(w["anthem"], *sorted_split(*client.current_split(w["anthem"]))),
            ),
            (a["label"], label.ledger.functions.withdraw(a["label"])),
        ]
        if i == 0:
            calls += [
                (
                    a["artist"],
                    artist.ledger.functions.setSplit(
                        w["harbour"],
                        *sorted_split([a["artist"], a["producer"]], [4000, 6000]),
                        *sorted_split(*client.current_split(w["harbour"])),
                    ),
                ),
                (a["venue"], venue.ledger.functions.deposit(7 * USD)),
                (a["artist"], artist.works.functions.registerWork("https://example.org/lost.json", bytes(12))),
                (a["label"], label.works.functions.setWorkURI(w["thirds"], "https://example.org/thirds-v2.json")),
            ]
        if i == depth - 1:
            calls += [
                (a["label"], label.ledger.functions.lockSplit(w["thirds"])),
                (a["venue"], venue.ledger.functions.revokeDevice(history.devices["gb2"][0])),
            ]
        _send_in_one_block(w3, calls)


@pytest.mark.parametrize("depth", [1, 3, 10])
@pytest.mark.parametrize("how", ["reorg", "rollback", "snapshot"])
def test_index_follows_the_chain_through_a_reorg(
    tmp_path, engine, w3, deployment, client, history, chain_snapshot, depth, how
):
    """Blocks the index has seen leave the chain (anvil_reorg, anvil_rollback, or a devnet reverted
    to a snapshot) with plays, splits, licenses, distributions, withdrawals, a new work, a URI
    change, a locked split and a revoked device in them; other blocks take their place. The index
    rolls back to the common ancestor only (not to the deploy block) and then equals, row for row,
    an index built from scratch on the chain as it now is."""
    client.as_account(history.accounts["venue"]).ensure_allowance(10_000 * USD)  # the lost blocks spend it
    index(engine, w3, deployment)
    ancestor = w3.eth.block_number
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    _lost_branch(client, history, depth)
    index(engine, w3, deployment)
    seen = w3.eth.block_number
    assert seen == ancestor + depth
    with engine.connect() as conn:
        assert "https://example.org/lost.json" in set(conn.execute(select(Work.uri)).scalars())
    lost = depth
    a = history.accounts
    if how == "reorg":  # replaces the newest blocks with new ones holding other transactions
        replacement = _batch_call(client, history, "gb1", {"harbour": 1}).build_transaction(
            {"from": a["venue"], "gas": 3_000_000}
        )
        tx = {k: replacement[k] for k in ("from", "to", "data", "gas")}
        assert "error" not in w3.provider.make_request("anvil_reorg", [lost, [[tx, 0]]])
        assert w3.eth.block_number == seen  # same height, other blocks
    elif how == "rollback":
        assert "error" not in w3.provider.make_request("anvil_rollback", [lost])
        client.as_account(a["venue"]).submit_batches(
            [_group(history, "gb1", {history.works["anthem"]: 2}, w3, deployment)]
        )
    else:
        assert w3.provider.make_request("evm_revert", [snap])["result"]
        client.as_account(a["shop"]).register_work(title="Kept")
    assert w3.eth.get_block(ancestor)["hash"]  # the ancestor is still there
    stats = Indexer(engine, w3, deployment, progress=False).run()
    ((before, to),) = stats.rollbacks
    assert before == seen and to == ancestor  # rolled back to the common ancestor, not the deploy block
    assert stats.from_block == ancestor + 1  # re-read only the blocks after it
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade(fresh)
    index(fresh, w3, deployment)
    assert table_snapshot(engine) == table_snapshot(fresh)
    assert all_statements_csv(engine, history) == all_statements_csv(fresh, history)
    fresh.dispose()


def _group(history, device, counts, w3, deployment):
    device_id, key = history.devices[device]
    nonce = next(_NONCES)
    now = w3.eth.get_block("latest")["timestamp"]
    batch = sign_batch(
        key, w3.eth.chain_id, deployment.ledger.address, nonce, now - 600, now - 60, encode_entries(counts)
    )
    group = Group(device_id >> 32)
    group.batches.append((device_id & 0xFFFFFFFF, batch))
    return group


def test_play_rows_are_exact(engine, w3, deployment, history):
    """Every play row: amount == count * rate when licensed, 0 otherwise."""
    index(engine, w3, deployment)
    with engine.connect() as conn:
        rows = conn.execute(select(Play.count, Play.licensed, Play.rate, Play.amount)).all()
    assert rows
    for count, licensed, rate, amount in rows:
        assert amount == (count * rate if licensed else 0)
        assert licensed or rate == 0


@pytest.fixture(scope="module")
def older_state(tmp_path_factory):
    """The state file a devnet dumped (contracts and the scripted history in it), its deployment and history."""
    path = tmp_path_factory.mktemp("devnet") / "older.json"
    with running_anvil("--timestamp", str(GENESIS), "--chain-id", "31337", "--dump-state", str(path)) as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        d = deploy(w3, w3.eth.accounts[0], BUILD_DIR)
        h = build_history(w3, LedgerClient(w3, d, w3.eth.accounts[0]))
        height = w3.eth.block_number
    assert path.exists()
    return path, d, h, height


def test_devnet_restarted_from_an_older_state_file_rolls_back_to_the_last_common_block(engine, older_state, tmp_path):
    """A devnet goes on from its state file, the index follows it; the devnet is killed and comes
    back from the older state file (what `make run` met after a SIGKILL): the blocks after the file
    are gone and new ones are mined. The index rolls back to the file's last block, not to the
    deploy block, and then equals a fresh index of the chain as it now is."""
    path, d, h, height = older_state
    with running_anvil("--chain-id", "31337", "--load-state", str(path)) as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        client = LedgerClient(w3, d, w3.eth.accounts[0])
        assert w3.eth.block_number == height
        client.as_account(h.accounts["venue"]).ensure_allowance(10_000 * USD)
        _lost_branch(client, h, 3)
        index(engine, w3, d)
        seen = w3.eth.block_number
    with running_anvil("--chain-id", "31337", "--load-state", str(path)) as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        client = LedgerClient(w3, d, w3.eth.accounts[0])
        assert w3.eth.block_number == height < seen
        client.as_account(h.accounts["shop"]).register_work(title="After the restart")
        stats = Indexer(engine, w3, d, progress=False).run()
        assert stats.rollbacks == [(seen, height)]  # the last block the state file kept
        assert stats.from_block == height + 1 > d.deploy_block
        fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
        upgrade(fresh)
        index(fresh, w3, d)
        assert table_snapshot(engine) == table_snapshot(fresh)
        assert all_statements_csv(engine, h) == all_statements_csv(fresh, h)
        fresh.dispose()


def test_no_common_block_within_the_depth_rebuilds_from_the_deploy_block(
    tmp_path, engine, w3, deployment, client, history, chain_snapshot
):
    """A reorg deeper than ``max_reorg_depth``: no kept hash is on the chain, so the index is
    rebuilt from the deploy block (and still equals a fresh one)."""
    client.as_account(history.accounts["venue"]).ensure_allowance(10_000 * USD)
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    index(engine, w3, deployment, block_range=1)
    _lost_branch(client, history, 3)
    index(engine, w3, deployment, block_range=1, max_reorg_depth=2)
    seen = w3.eth.block_number
    assert w3.provider.make_request("evm_revert", [snap])["result"]
    w3.provider.make_request("evm_mine", [])
    stats = Indexer(engine, w3, deployment, progress=False, max_reorg_depth=2).run()
    assert stats.rollbacks == [(seen, deployment.deploy_block - 1)]
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade(fresh)
    index(fresh, w3, deployment)
    assert table_snapshot(engine) == table_snapshot(fresh)
    fresh.dispose()
