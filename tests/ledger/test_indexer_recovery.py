"""The indexer survives crashes, never writes a row twice, rebuilds identically, and follows."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from ledger.cli import main
from ledger.db import make_engine, upgrade
from ledger.errors import ReorgDetectedError
from ledger.indexer import Indexer
from ledger.models import IndexerCheckpoint, Play

from ledger_helpers import all_statements_csv, index, play_count, table_snapshot


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


@pytest.mark.parametrize("depth", [1, 3, 10])
@pytest.mark.parametrize("how", ["rollback", "snapshot"])
def test_index_follows_the_chain_through_a_reorg(engine, w3, deployment, client, history, chain_snapshot, depth, how):
    """Blocks the index has seen leave the chain (anvil_rollback, or a devnet reverted to a
    snapshot); other blocks take their place. The index drops what left and indexes what came."""
    index(engine, w3, deployment)
    shop = client.as_account(history.accounts["shop"])
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    for i in range(depth):
        shop.register_work(title=f"Lost {i}")
    index(engine, w3, deployment)
    assert sum(t.startswith("Lost") for t in _titles(engine)) == depth
    if how == "rollback":
        assert "error" not in w3.provider.make_request("anvil_rollback", [depth])
    else:
        assert w3.provider.make_request("evm_revert", [snap])["result"]
    shop.register_work(title="Kept")  # the new branch: fewer blocks than the lost ones for depth > 1
    index(engine, w3, deployment)
    titles = _titles(engine)
    assert "Kept" in titles and not any(t.startswith("Lost") for t in titles)
    assert len(titles) == client.total_works()


def test_play_rows_are_exact(engine, w3, deployment, history):
    """Every play row: amount == count * rate when licensed, 0 otherwise."""
    index(engine, w3, deployment)
    with engine.connect() as conn:
        rows = conn.execute(select(Play.count, Play.licensed, Play.rate, Play.amount)).all()
    assert rows
    for count, licensed, rate, amount in rows:
        assert amount == (count * rate if licensed else 0)
        assert licensed or rate == 0
