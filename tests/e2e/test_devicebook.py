"""DeviceBook (ingest's view of devices and nonces, followed from the ledger's events) against a
real Anvil: it answers as the contract does, sees registrations, revocations and applied nonces
by following the chain, refuses only from a view brought to the head, and loads again on a reorg."""

import pytest
from eth_account import Account

from ledger.devicebook import DeviceBook
from ledger.errors import ChainUnavailableError
from ledger.nonces import JsonRpc, JsonRpcWordReader, nonce_bitmap_selector

from .conftest import apply_on_chain, free_port
from .conftest import register_device as register


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_book(world, clock, reads=None):
    abi = world.deployment.ledger.abi
    url = world.w3.provider.endpoint_uri
    reader = JsonRpcWordReader(url, world.ledger_address, nonce_bitmap_selector(abi))

    def read(device, word):
        if reads is not None:
            reads.append((device, word))
        return reader(device, word)

    return DeviceBook(JsonRpc(url), world.ledger_address, abi, world.deployment.deploy_block, read, clock=clock)


def on_chain(world, key):
    """(device id, licensee, revokedAt, notBefore) of the key's latest registration, per the contract."""
    ledger = world.w3.eth.contract(address=world.ledger_address, abi=world.deployment.ledger.abi)
    device_id = ledger.functions.deviceIdOf(key).call()
    if device_id == 0:
        return None
    _key, licensee, revoked_at, not_before = ledger.functions.deviceInfo(device_id).call()
    return device_id, licensee, revoked_at, not_before


def in_book(book, key):
    record = book.device(key)
    return None if record is None else (record.device_id, record.licensee, record.revoked_at, record.not_before)


def test_the_book_answers_as_the_contract_through_register_revoke_and_register_again(world):
    clock = Clock()
    before, _ = register(world)
    book = make_book(world, clock)
    assert in_book(book, before.address) == on_chain(world, before.address) is not None
    assert in_book(book, Account.create().address) is None

    later, later_id = register(world)  # after the book loaded: found by following the chain
    assert in_book(book, later.address) == on_chain(world, later.address) is not None

    world.licensee.revoke_device(later_id)
    clock.advance(book.refresh)
    revoked = in_book(book, later.address)
    assert revoked == on_chain(world, later.address) and revoked[2] > 0

    world.licensee.register_device(later.address, "GB", world.licensee.device_proof(later))
    # the record in the view is revoked: the view is brought to the head before refusing
    again = in_book(book, later.address)
    assert again == on_chain(world, later.address)
    assert again[0] != later_id and again[2] == 0 and again[3] == revoked[2]  # notBefore: the revocation
    assert book.loads == 1


def test_a_miss_is_answered_from_a_view_at_the_head(world):
    clock = Clock()
    book = make_book(world, clock)
    calls = []
    rpc = book.rpc
    book.rpc = lambda method, params: calls.append(method) or rpc(method, params)
    assert book.device(Account.create().address) is None
    calls.clear()
    for _ in range(3):  # unknown keys, no new block: one head read each, no eth_getLogs
        assert book.device(Account.create().address) is None
    assert calls == ["eth_getBlockByNumber"] * 3
    fresh, _ = register(world)  # registered a moment ago, the clock not moved: still found
    assert book.device(fresh.address) is not None


def test_nonces_applied_after_the_word_was_read_are_followed_without_reading_it_again(world):
    clock = Clock()
    reads = []
    account, device_id = register(world)
    apply_on_chain(world, account, device_id, 0)
    book = make_book(world, clock, reads)
    assert book.is_nonce_used(account.address, 0)
    assert not book.is_nonce_used(account.address, 1)
    assert not book.is_nonce_used(account.address, 2)
    words_read = len(reads)
    assert words_read == 1  # the word, read once (a fresh read needs no confirmation)

    apply_on_chain(world, account, device_id, 1)
    assert not book.is_nonce_used(account.address, 1)  # a view up to refresh s old may miss it
    assert len(reads) == words_read
    clock.advance(book.refresh)
    assert book.is_nonce_used(account.address, 1)  # followed from PlaysRecorded (then confirmed)
    assert not book.is_nonce_used(account.address, 2)
    assert len(reads) == words_read + 1  # only the confirmation of "used"
    assert not book.is_nonce_used(account.address, 256)  # another word: read once
    assert len(reads) == words_read + 2


def test_a_reorg_under_the_view_loads_it_again(world):
    clock = Clock()
    book = make_book(world, clock)
    w3 = world.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    gone, _ = register(world)
    assert book.device(gone.address) is not None
    assert w3.provider.make_request("evm_revert", [snapshot])["result"]
    w3.provider.make_request("evm_mine", [])  # the same height again, another block
    clock.advance(book.refresh)
    assert book.device(gone.address) is None
    assert book.loads == 2


def test_the_view_answers_while_young_and_raises_when_the_node_stays_away(world):
    clock = Clock()
    account, _ = register(world)
    book = make_book(world, clock)
    assert book.device(account.address) is not None
    book.rpc = JsonRpc(f"http://127.0.0.1:{free_port()}", timeout=2)
    clock.advance(book.refresh)
    assert book.device(account.address) is not None  # a failed follow is logged; the view is young
    clock.advance(book.max_lag)
    with pytest.raises(ChainUnavailableError):
        book.device(account.address)
