"""scripts/device.py carries its own copy of the batch format; it must equal ledger.playbatch."""

import ast

from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import playbatch

from tests.support import DEVICE_SCRIPT

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
KEY = "0x" + "42" * 32

entry_maps = st.dictionaries(st.integers(1, 0xFFFFFFFF), st.integers(1, 0xFFFF), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(counts=entry_maps)
def test_encode_entries_matches_ledger(device_module, counts):
    assert device_module.encode_entries(counts) == playbatch.encode_entries(counts)


@settings(max_examples=40, deadline=None)
@given(
    counts=entry_maps,
    nonce=st.integers(0, 0xFFFFFFFF),
    t0=st.integers(0, 2**32 - 2),
    span=st.integers(0, 1),
    chain_id=st.sampled_from([1, 31337, 8453]),
)
def test_signature_matches_ledger_byte_for_byte(device_module, counts, nonce, t0, span, chain_id):
    account = Account.from_key(KEY)
    entries = playbatch.encode_entries(counts)
    expected = playbatch.sign_batch(KEY, chain_id, LEDGER, nonce, t0, t0 + span, entries)
    got = device_module.sign_batch(account, chain_id, LEDGER, nonce, t0, t0 + span, entries)
    assert got == expected.signature
    assert expected.recover(chain_id, LEDGER) == account.address


def test_payload_round_trips_through_ledger_decoding(device_module):
    account = Account.from_key(KEY)
    body = device_module.batch_payload(account, 31337, LEDGER, 7, 100, 160, {9: 2, 3: 5})
    entries = bytes.fromhex(body["entries"][2:])
    assert playbatch.decode_entries(entries) == [(3, 5), (9, 2)]
    batch = playbatch.SignedBatch(body["device"], 7, 100, 160, entries, bytes.fromhex(body["signature"][2:]))
    assert batch.recover(31337, LEDGER) == account.address


def test_device_script_imports_only_what_a_device_has():
    tree = ast.parse(DEVICE_SCRIPT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    allowed = {"eth_account", "requests", "paho", "__future__"}
    import sys

    third_party = {r for r in roots if r not in sys.stdlib_module_names}
    assert third_party <= allowed, third_party


@settings(max_examples=20, deadline=None)
@given(nonce=st.integers(0, 1000), chain_id=st.integers(1, 100_000))
def test_registration_proof_matches_ledger(device_module, nonce, chain_id):
    account = Account.from_key(KEY)
    licensee = "0x" + "ab" * 20
    ours = device_module.registration_proof(account, chain_id, LEDGER, licensee, nonce)
    assert ours == playbatch.sign_device_registration(account, chain_id, LEDGER, licensee, nonce)
    digest = playbatch.device_registration_digest(chain_id, LEDGER, account.address, licensee, nonce)
    assert Account._recover_hash(digest, signature=ours) == account.address
