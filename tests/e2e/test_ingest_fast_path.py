"""The fast ingest path against a real Anvil and both databases: the raw nonce word read, one
INSERT per new batch, and the same answers as before for resends and conflicts."""

import json
import time

from sqlalchemy import event
from web3 import Web3

from ledger import playbatch
from ledger.ingest import ChainDevices, IngestContext, handle_json
from ledger.nonces import JsonRpcWordReader, nonce_bitmap_selector

from .conftest import apply_on_chain, free_port, make_ctx, signed_payload, stored_count


def dead_node_ctx(world, engine) -> IngestContext:
    dead = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    ctx = make_ctx(world, engine)
    return IngestContext(
        ctx.chain_id,
        ctx.ledger_address,
        ctx.sessions,
        ChainDevices.for_deployment(dead, world.deployment),
        max_skew=300,
    )


def test_raw_nonce_word_equals_the_contracts(world, registered):
    account, device_id = registered
    for nonce in (0, 300):
        apply_on_chain(world, account, device_id, nonce)
    reader = JsonRpcWordReader(
        world.w3.provider.endpoint_uri, world.ledger_address, nonce_bitmap_selector(world.deployment.ledger.abi)
    )
    ledger = world.w3.eth.contract(address=world.ledger_address, abi=world.deployment.ledger.abi)
    for word, expected in ((0, 1), (1, 1 << 44), (2, 0)):
        assert reader(account.address, word) == expected
        assert ledger.functions.nonceBitmap(account.address, word).call() == expected


def test_nonce_check_needs_no_web3_call(world, sqlite_engine, registered, monkeypatch):
    account, _ = registered
    ctx = make_ctx(world, sqlite_engine)
    calls = []
    monkeypatch.setattr(ctx.devices.contract.functions, "isNonceUsed", lambda *a: calls.append(a))
    monkeypatch.setattr(ctx.devices.contract.functions, "nonceBitmap", lambda *a: calls.append(a))
    for nonce in range(3):
        status, answer = handle_json(json.dumps(signed_payload(account, world, nonce, {world.works[0]: 1})), ctx)
        assert status == 202, answer
    assert calls == []


def test_new_batch_is_one_insert_and_nothing_else(world, engine, registered):
    account, _ = registered
    ctx = make_ctx(world, engine)
    warm = json.dumps(signed_payload(account, world, 0, {world.works[0]: 1}))
    assert handle_json(warm, ctx)[0] == 202  # device and skew cached
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        status, answer = handle_json(json.dumps(signed_payload(account, world, 1, {world.works[0]: 2})), ctx)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert status == 202, answer
    assert statements == ["INSERT"]


def test_resend_after_the_nonce_is_used_on_chain_is_the_same_202(world, engine, registered):
    account, device_id = registered
    body = json.dumps(signed_payload(account, world, 0, {world.works[0]: 1}))
    first = handle_json(body, make_ctx(world, engine))
    assert first[0] == 202
    apply_on_chain(world, account, device_id, 0)  # as the relayer would (same nonce)
    assert handle_json(body, make_ctx(world, engine, nonce_ttl=0)) == first
    assert stored_count(engine) == 1


def test_resend_after_revocation_is_the_same_202(world, sqlite_engine, registered):
    account, device_id = registered
    now = int(time.time())  # toTime after the revocation: the chain refuses the batch now
    body = json.dumps(signed_payload(account, world, 0, {world.works[0]: 1}, from_time=now, to_time=now + 120))
    first = handle_json(body, make_ctx(world, sqlite_engine))
    assert first[0] == 202
    world.licensee.revoke_device(device_id)
    other = json.dumps(signed_payload(account, world, 1, {world.works[0]: 1}, from_time=now, to_time=now + 120))
    assert handle_json(other, make_ctx(world, sqlite_engine))[1]["error"]["code"] == "device_revoked"
    assert handle_json(body, make_ctx(world, sqlite_engine)) == first


def test_stored_batch_is_answered_without_the_node(world, sqlite_engine, registered):
    account, _ = registered
    body = json.dumps(signed_payload(account, world, 0, {world.works[0]: 1}))
    first = handle_json(body, make_ctx(world, sqlite_engine))
    assert first[0] == 202
    ctx = dead_node_ctx(world, sqlite_engine)
    assert handle_json(body, ctx) == first
    other = json.dumps(signed_payload(account, world, 0, {world.works[1]: 5}))
    assert handle_json(other, ctx)[1]["error"]["code"] == "nonce_conflict"
    fresh = json.dumps(signed_payload(account, world, 1, {world.works[0]: 1}))
    assert handle_json(fresh, ctx)[0:1] == (503,)
    assert stored_count(sqlite_engine) == 1


def test_conflict_found_by_the_unique_constraint_is_409(world, engine, registered):
    account, _ = registered
    ctx = make_ctx(world, engine)
    assert handle_json(json.dumps(signed_payload(account, world, 4, {world.works[0]: 1})), ctx)[0] == 202
    status, answer = handle_json(json.dumps(signed_payload(account, world, 4, {world.works[0]: 2})), ctx)
    assert (status, answer["error"]["code"]) == (409, "nonce_conflict")
    assert stored_count(engine) == 1


def test_high_s_twin_of_a_valid_signature_is_refused(world, sqlite_engine, registered):
    account, _ = registered
    payload = signed_payload(account, world, 0, {world.works[0]: 1})
    sig = bytes.fromhex(payload["signature"][2:])
    r, vs = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    s, v = vs & ((1 << 255) - 1), (vs >> 255) + 27
    twin = r.to_bytes(32, "big") + (playbatch.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    status, answer = handle_json(json.dumps(dict(payload, signature="0x" + twin.hex())), make_ctx(world, sqlite_engine))
    assert (status, answer["error"]["code"]) == (401, "bad_signature")
    assert stored_count(sqlite_engine) == 0


def test_direct_digest_equals_the_contracts(world, registered):
    account, _ = registered
    ledger = world.w3.eth.contract(address=world.ledger_address, abi=world.deployment.ledger.abi)
    entries = playbatch.encode_entries({world.works[0]: 3, world.works[1]: 1})
    for nonce, from_time, to_time in ((0, 0, 1), (7, 1_764_000_000, 1_764_000_060), (2**32 - 1, 2**32 - 2, 2**32 - 1)):
        expected = ledger.functions.playBatchDigest(account.address, nonce, from_time, to_time, entries).call()
        assert playbatch.batch_digest(
            world.w3.eth.chain_id, world.ledger_address, account.address, nonce, from_time, to_time, entries
        ) == bytes(expected)
