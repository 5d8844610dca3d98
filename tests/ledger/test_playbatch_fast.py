"""The direct PlayBatch digest and signer recovery against eth-account's generic paths."""

from __future__ import annotations

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import ingest, playbatch
from ledger.errors import BatchFormatError

N = playbatch.SECP256K1_N
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
keys = st.integers(min_value=1, max_value=N - 1).map(lambda k: Account.from_key(k.to_bytes(32, "big")))
digests = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(
    chain_id=st.integers(min_value=0, max_value=2**256 - 1),
    ledger=addresses,
    device=addresses,
    nonce=st.integers(min_value=0, max_value=2**256 - 1),
    from_time=st.integers(min_value=0, max_value=2**64 - 1),
    to_time=st.integers(min_value=0, max_value=2**64 - 1),
    entries=st.binary(max_size=6 * 40),
)
def test_batch_digest_equals_encode_typed_data(chain_id, ledger, device, nonce, from_time, to_time, entries):
    assert playbatch.batch_digest(
        chain_id, ledger, device, nonce, from_time, to_time, entries
    ) == playbatch.batch_digest_generic(chain_id, ledger, device, nonce, from_time, to_time, entries)


def test_batch_digest_ignores_address_case():
    ledger, device = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
    assert playbatch.batch_digest(1, ledger, device, 1, 2, 3, b"x") == playbatch.batch_digest(
        1, ledger.lower(), device.upper().replace("0X", "0x"), 1, 2, 3, b"x"
    )


@pytest.mark.parametrize("field", ["nonce", "from_time", "to_time", "device"])
def test_batch_digest_refuses_values_its_type_cannot_hold(field):
    args = {
        "chain_id": 1,
        "ledger_address": "0x" + "11" * 20,
        "device": "0x" + "22" * 20,
        "nonce": 1,
        "from_time": 2,
        "to_time": 3,
        "entries": b"",
    }
    args[field] = "0x1234" if field == "device" else (2**256 if field == "nonce" else 2**64)
    with pytest.raises(BatchFormatError):
        playbatch.batch_digest(**args)


def _compact(sig) -> bytes:
    return playbatch.to_compact_signature(sig.r, sig.s, sig.v)


@settings(max_examples=100, deadline=None)
@given(account=keys, digest=digests)
def test_recover_signer_equals_eth_account(account, digest):
    sig = account.unsafe_sign_hash(digest)
    expected = Account._recover_hash(digest, vrs=(sig.v, sig.r, sig.s))
    assert playbatch.recover_signer(digest, _compact(sig)) == bytes.fromhex(expected[2:])


def _ingest_signer(digest: bytes, rsv: bytes) -> bytes | None:
    """What ingest makes of a 65-byte r|s|v signature: parse (to EIP-2098), then recover."""
    try:
        compact = ingest.parse_signature({"signature": "0x" + rsv.hex()})
    except ingest.BadSignature:
        return None
    return playbatch.recover_signer(digest, compact)


@settings(max_examples=50, deadline=None)
@given(account=keys, digest=digests)
def test_high_s_twin_that_eth_account_accepts_is_refused(account, digest):
    sig = account.unsafe_sign_hash(digest)
    high_s, flipped_v = N - sig.s, 55 - sig.v  # the same point: (r, n - s) with the other parity
    assert Account._recover_hash(digest, vrs=(flipped_v, sig.r, high_s)) == account.address
    rsv = sig.r.to_bytes(32, "big") + high_s.to_bytes(32, "big") + bytes([flipped_v])
    assert _ingest_signer(digest, rsv) is None
    assert _ingest_signer(
        digest, sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])
    ) == bytes.fromhex(account.address[2:])


@pytest.mark.parametrize("s", [playbatch.MAX_S + 1, 2**255 - 1])
def test_recover_signer_refuses_s_above_half_the_order(s):
    """Compact signatures can carry s up to 2**255 - 1: above n/2 the contract skips the batch."""
    r = Account.create().unsafe_sign_hash(b"\x01" * 32).r  # the x of a curve point
    assert Account._recover_hash(b"\x01" * 32, vrs=(27, r, s))  # ecrecover without low-s: a signer
    assert playbatch.recover_signer(b"\x01" * 32, playbatch.to_compact_signature(r, s, 27)) is None
    assert playbatch.recover_signer(b"\x01" * 32, playbatch.to_compact_signature(r, playbatch.MAX_S, 27))


@settings(max_examples=50, deadline=None)
@given(account=keys, digest=digests)
def test_recover_signer_with_the_wrong_parity_recovers_what_eth_account_does(account, digest):
    sig = account.unsafe_sign_hash(digest)
    wrong_v = 55 - sig.v
    try:
        other = Account._recover_hash(digest, vrs=(wrong_v, sig.r, sig.s))
    except Exception:  # noqa: BLE001 - no point for that parity
        other = None
    ours = playbatch.recover_signer(digest, playbatch.to_compact_signature(sig.r, sig.s, wrong_v))
    assert ours == (bytes.fromhex(other[2:]) if other else None)
    assert other != account.address


@pytest.mark.parametrize("r", [0, N, 2**256 - 1])
def test_recover_signer_refuses_r_out_of_range(r):
    sig = Account.create().unsafe_sign_hash(b"\x01" * 32)
    assert playbatch.recover_signer(b"\x01" * 32, playbatch.to_compact_signature(r, sig.s, sig.v)) is None


def test_recover_signer_refuses_s_zero():
    sig = Account.create().unsafe_sign_hash(b"\x01" * 32)
    assert playbatch.recover_signer(b"\x01" * 32, playbatch.to_compact_signature(sig.r, 0, sig.v)) is None


@pytest.mark.parametrize("v", [2, 26, 29])
def test_rsv_signature_with_a_bad_v_is_a_bad_signature(v):
    sig = Account.create().unsafe_sign_hash(b"\x01" * 32)
    with pytest.raises(Exception):  # noqa: B017 - eth-account refuses it too
        Account._recover_hash(b"\x01" * 32, vrs=(v, sig.r, sig.s))
    rsv = sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([v])
    with pytest.raises(ingest.BadSignature):
        ingest.parse_signature({"signature": "0x" + rsv.hex()})


def test_signed_batch_recovers_through_both_paths():
    account = Account.create()
    ledger = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    batch = playbatch.sign_batch(account, 31337, ledger, 5, 10, 20, playbatch.encode_entries({7: 2, 9: 1}))
    digest = playbatch.batch_digest(31337, ledger, account.address, 5, 10, 20, batch.entries)
    assert batch.recover(31337, ledger) == account.address
    assert playbatch.recover_signer(digest, batch.signature) == bytes.fromhex(account.address[2:])
