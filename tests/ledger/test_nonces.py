"""NonceWords: the nonce bitmap cache of ingest, with a fake node (no chain)."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from ledger.errors import ChainUnavailableError
from ledger.nonces import JsonRpcWordReader, NonceWords, nonce_bitmap_selector
from tests.support import free_port

DEVICE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"


class FakeChain:
    def __init__(self) -> None:
        self.words: dict[tuple[str, int], int] = {}
        self.reads: list[tuple[str, int]] = []

    def use(self, nonce: int) -> None:
        key = (DEVICE, nonce >> 8)
        self.words[key] = self.words.get(key, 0) | 1 << (nonce & 255)

    def clear(self, nonce: int) -> None:
        key = (DEVICE, nonce >> 8)
        self.words[key] = self.words.get(key, 0) & ~(1 << (nonce & 255))

    def __call__(self, device: str, word: int) -> int:
        self.reads.append((device, word))
        return self.words.get((device, word), 0)


@pytest.fixture
def clock():
    now = [100.0]
    return now


def cache(chain: FakeChain, clock: list[float], ttl: float = 10.0) -> NonceWords:
    return NonceWords(chain, ttl=ttl, clock=lambda: clock[0])


def test_nonces_of_one_word_read_the_word_once_within_ttl(clock):
    chain = FakeChain()
    words = cache(chain, clock)
    assert [words.is_used(DEVICE, n) for n in range(256)] == [False] * 256
    assert chain.reads == [(DEVICE, 0)]
    assert not words.is_used(DEVICE, 256)
    assert chain.reads == [(DEVICE, 0), (DEVICE, 1)]


def test_bit_is_nonce_and_255_of_word_nonce_shift_8(clock):
    chain = FakeChain()
    chain.use(300)
    words = cache(chain, clock)
    assert words.is_used(DEVICE, 300)
    assert not words.is_used(DEVICE, 44)
    assert not words.is_used(DEVICE, 301)


def test_word_is_read_again_after_ttl(clock):
    chain = FakeChain()
    words = cache(chain, clock, ttl=5)
    assert not words.is_used(DEVICE, 3)
    chain.use(3)
    clock[0] += 4.9
    assert not words.is_used(DEVICE, 3)  # stale within ttl: the relayer will see NonceUsed
    clock[0] += 0.2
    assert words.is_used(DEVICE, 3)
    assert len(chain.reads) == 2


def test_cached_used_bit_is_read_again_before_refusing(clock):
    chain = FakeChain()
    chain.use(7)
    words = cache(chain, clock)
    assert words.is_used(DEVICE, 7)
    chain.clear(7)  # a reorg or a devnet revert
    assert not words.is_used(DEVICE, 7)  # never refuses a valid batch from the cache
    assert len(chain.reads) == 2


def test_cache_is_bounded(clock):
    chain = FakeChain()
    words = NonceWords(chain, ttl=10, clock=lambda: clock[0], max_words=4)
    for word in range(10):
        words.is_used(DEVICE, word << 8)
    assert len(words._words) <= 4


def test_unreachable_node_is_chain_unavailable():
    reader = JsonRpcWordReader(f"http://127.0.0.1:{free_port()}", "0x" + "11" * 20, b"\x12\x34\x56\x78", timeout=2)
    with pytest.raises(ChainUnavailableError):
        reader(DEVICE, 0)


def test_selector_comes_from_the_abi():
    abi = [
        {
            "type": "function",
            "name": "nonceBitmap",
            "inputs": [{"type": "address"}, {"type": "uint256"}],
            "outputs": [{"type": "uint256"}],
        }
    ]
    assert nonce_bitmap_selector(abi).hex() == keccak(text="nonceBitmap(address,uint256)")[:4].hex()
    with pytest.raises(ValueError):
        nonce_bitmap_selector([dict(abi[0], inputs=[{"type": "uint64"}, {"type": "uint32"}])])
