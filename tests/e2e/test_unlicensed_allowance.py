"""The relayer's daily allowance of batches that pay nobody, per licensee, on a real chain.

World: works[0] and works[1] are licensed (METERED) by the licensee, works[2] is not.
"""

from __future__ import annotations

import json

from eth_account import Account
from sqlalchemy import select

from ledger.chain import LicenseKind
from ledger.db import session_factory
from ledger.ingest import handle_json
from ledger.pending import CONFIRMED, PENDING, PendingBatch, RelayUnlicensedUsage
from ledger.relayer import UNLICENSED_LIMIT

from .conftest import ESCROW, RATE, make_ctx, relayer_for, signed_payload


def _device(world, client):
    account = Account.create()
    client.register_device(account.address, "GB", client.device_proof(account))
    return account


def _accept(world, engine, account, nonce, counts):
    status, answer = handle_json(json.dumps(signed_payload(account, world, nonce, counts)), make_ctx(world, engine))
    assert status == 202, answer
    return answer["batchId"]


def _relay_all(relayer):
    while relayer.relay_once() is not None:
        pass


def _states(engine):
    with session_factory(engine)() as s:
        return {row.id: (row.status, row.reason) for row in s.scalars(select(PendingBatch))}


def test_batches_that_pay_nobody_wait_once_the_day_is_spent_and_go_out_with_a_license(world, engine):
    unlicensed = world.works[2]
    account = _device(world, world.licensee)
    first = _accept(world, engine, account, 0, {unlicensed: 3})
    over = _accept(world, engine, account, 1, {unlicensed: 3})  # 6 > 5: held back
    mixed = _accept(world, engine, account, 2, {world.works[0]: 1, unlicensed: 4})  # pays someone: never held

    other = world.licensee.as_account(world.w3.eth.accounts[2])  # another licensee has its own allowance
    world.admin.mint(other.address, ESCROW)
    other.deposit(ESCROW)
    other_device = _device(world, other)
    others = _accept(world, engine, other_device, 0, {unlicensed: 5})

    escrow_before = world.licensee.escrow_of(world.licensee.address)
    relayer = relayer_for(world, engine, unlicensed_plays_per_day=5, unlicensed_retry_after=3_600)
    _relay_all(relayer)

    states = _states(engine)
    assert states[first] == (CONFIRMED, None)
    assert states[mixed] == (CONFIRMED, None)
    assert states[others] == (CONFIRMED, None)
    assert states[over] == (PENDING, UNLICENSED_LIMIT)
    assert (
        world.licensee.escrow_of(world.licensee.address) == escrow_before - RATE
    )  # only the mixed batch's licensed play
    with session_factory(engine)() as s:
        usage = {u.licensee_index: u.plays for u in s.scalars(select(RelayUnlicensedUsage))}
    assert sorted(usage.values()) == [3, 5]

    # The licensee buys a license that covers the held batch's plays: it goes out and is charged.
    world.licensee.buy_license(unlicensed, LicenseKind.METERED)
    _relay_all(relayer_for(world, engine, unlicensed_plays_per_day=5, unlicensed_retry_after=0))
    assert _states(engine)[over] == (CONFIRMED, None)
    assert world.licensee.escrow_of(world.licensee.address) == escrow_before - RATE - 3 * RATE


def test_a_zero_allowance_holds_every_batch_that_pays_nobody_and_nothing_else(world, engine):
    account = _device(world, world.licensee)
    held = _accept(world, engine, account, 0, {world.works[2]: 1})
    paid = _accept(world, engine, account, 1, {world.works[1]: 2})
    _relay_all(relayer_for(world, engine, unlicensed_plays_per_day=0, unlicensed_retry_after=3_600))
    states = _states(engine)
    assert states[held] == (PENDING, UNLICENSED_LIMIT)
    assert states[paid] == (CONFIRMED, None)


def test_without_a_limit_every_batch_goes_out(world, engine):
    account = _device(world, world.licensee)
    ids = [_accept(world, engine, account, n, {world.works[2]: 50}) for n in range(3)]
    _relay_all(relayer_for(world, engine, unlicensed_plays_per_day=None))
    assert all(_states(engine)[i] == (CONFIRMED, None) for i in ids)
