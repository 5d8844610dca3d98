"""Differential test of the play path: the Yul `submitBatches` against its plain-Solidity
reference (contracts/test/PlayReportingReference.sol), on the same state and the same call.

Each example builds one random `submitBatches` call (several licensees and devices, works whose
ids collide in a small table, every skip reason, nonces in any order and across the 64-nonce
chunks a live device slot holds and the 256-nonce archive words (devices whose live chunk was
moved on, whose archive holds older nonces, whose chunk was archived by a revocation),
time edges around revocation, re-registration, license periods and clock skew, counters next to
their limits, unpayable batches undone, malformed calls). It runs the call on the Yul ledger,
rewinds the chain, swaps the reference's runtime code in at the same address (same storage,
same EIP-712 domain), runs the same call at the same block time, and compares: success, return
or revert data, every log (topics and data) and every storage change (prestate diff trace).

Examples: 300 by default (make test); PLAY_PATH_FUZZ_EXAMPLES=N for a long run (make fuzz).
With PLAY_PATH_COVERAGE=FILE (and an Anvil started with --steps-tracing: `make
play-path-coverage`) the Yul runs are also traced opcode by opcode and the program counters
reached (and each JUMPI's directions) are written to FILE for scripts/play_path_coverage.py,
which maps them to lines and branches of the play path.
"""

import json
import os
import struct

import pytest
from brownie import accounts, chain, web3
from eth_account import Account
from brownie.test import given
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from contract_helpers import FLAT, METERED, Reporter, register_device, sign_registration
from ledger.playbatch import SKIP_REASONS, batch_digest, decode_play_records, to_compact_signature

EXAMPLES = int(os.environ.get("PLAY_PATH_FUZZ_EXAMPLES", "300"))
COVERAGE_FILE = os.environ.get("PLAY_PATH_COVERAGE")
#: pc -> directions seen ("next" for an opcode reached; "jump"/"fall" for a JUMPI's two ways).
COVERAGE: dict[int, set[str]] = {}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# Work ids: 1, 17, 33 share a home row in a 16-row table (2, 18 too); 999 is not registered.
POOL = [1, 1, 1, 2, 3, 17, 17, 18, 33, 999]  # (1 and 17 drawn more often: their licenses have edges)
REGISTERED = [1, 2, 3, 17, 18, 33]
NEAR_FULL_PLAYS_WORK = 3  # its play counter is 60 below 2**40 (rate 4)
NEAR_FULL_ACCRUAL_WORK = 18  # its accrual is 200 below 2**56 (rate 3)
DAY = 86_400
ANCHORS = ["now", "revokedAt", "short expiry", "prev expiry", "skew"]


def _rpc(method, params):
    response = web3.provider.make_request(method, params)
    if "error" in response:
        raise RuntimeError(f"{method}: {response['error']}")
    return response["result"]


@pytest.fixture(scope="module")
def scene(RoyaltyLedgerHarness, PlayReportingReference, token, works, forwarder, deployer, artist):
    """The Yul ledger (harness build) with licensees, licenses of two rate periods, devices
    (one revoked and re-registered elsewhere), escrows small enough to run out, and counters
    next to their limits; plus the reference's runtime code."""
    ledger = RoyaltyLedgerHarness.deploy(token, works, forwarder, {"from": deployer})
    reference = PlayReportingReference.deploy(token, works, forwarder, {"from": deployer})
    next_id = works.totalWorks() + 1
    assert next_id == 1, "the module's chain starts without works"
    for w in range(1, max(REGISTERED) + 1):
        works.registerWork(f"ipfs://d{w}", b"\x00" * 12, {"from": artist})
        if w in REGISTERED:
            ledger.setTerms(w, METERED, 0, w % 4 + 1, 30 * DAY, True, {"from": artist})
    licensees = [accounts[5], accounts[6], accounts[8]]
    for who, escrow in zip(licensees, (10**9, 300, 200_000)):
        token.mint(who, 2**57, {"from": who})
        token.approve(ledger, 2**256 - 1, {"from": who})
        ledger.deposit(escrow, {"from": who})
    # Every licensee: work 1 at rate 2 for an hour, then at rate 9 (two periods); work 17 for
    # one hour only; licensee 0 also every other work, licensee 1 work 2.
    ledger.setTerms(1, METERED, 0, 2, 3_600, True, {"from": artist})
    ledger.setTerms(17, METERED, 0, 4, 3_600, True, {"from": artist})
    for who in licensees:
        ledger.buyLicenses([1, 17], METERED, 0, 10, 0, {"from": who})
    ledger.setTerms(1, METERED, 0, 9, 30 * DAY, True, {"from": artist})
    for who in licensees:
        ledger.buyLicense(1, METERED, 0, 10, 0, {"from": who})
    ledger.buyLicenses([2, 3, 18, 33], METERED, 0, 10, 0, {"from": licensees[0]})
    ledger.buyLicenses([2, 3, 18], METERED, 0, 10, 0, {"from": licensees[1]})
    ledger.buyLicenses([3, 18], METERED, 0, 10, 0, {"from": licensees[2]})
    # Let the one-hour periods end, so batches can fall on both sides of their ends.
    chain.sleep(2 * 3_600)
    # Counters next to their limits.
    ledger.forcePlays(NEAR_FULL_PLAYS_WORK, 2**40 - 60, {"from": deployer})
    fee = 2**56 - 200 - ledger.accruedOf(NEAR_FULL_ACCRUAL_WORK)
    ledger.setTerms(NEAR_FULL_ACCRUAL_WORK, FLAT, fee, 0, DAY, True, {"from": artist})
    ledger.buyLicense(NEAR_FULL_ACCRUAL_WORK, FLAT, fee, 0, 0, {"from": licensees[0]})
    # Devices: two per licensee; licensee 0's second is revoked and its key re-registered by 2.
    devices = [[register_device(ledger, who) for _ in range(2)] for who in licensees]
    # Nonces used before the examples (unlicensed work 999: nothing charged), so batches meet a
    # live chunk moved past older ones: licensee 0's first device ends with chunk 4 live {300}
    # and the archive holding 2, 70 and 200 (200 archived when 300 came); licensee 1's first
    # device with chunk 1 live {65}; the device revoked below with 3 and 257 (chunk 4 live, then
    # archived by the revocation).
    reporter = Reporter(ledger, accounts[7])
    for device, nonces in ((devices[0][0], (200, 70, 300, 2)), (devices[1][0], (65,)), (devices[0][1], (3, 257))):
        for nonce in nonces:
            tx = reporter.submit([(device, reporter.sign(device, nonce, struct.pack(">IH", 999, 1)))])
            assert tx.return_value == 1
    chain.sleep(60)
    revoked = devices[0][1]
    ledger.revokeDevice(revoked.device_id, {"from": licensees[0]})
    chain.sleep(60)
    devices[2].append(register_device(ledger, licensees[2], key=revoked.key))
    chain.sleep(120)
    chain.mine()
    _, _, revoked_at, _ = ledger.deviceInfo(revoked.device_id)
    anchors = [
        {  # per licensee
            "revokedAt": revoked_at,
            "short expiry": ledger.licenseOf(who, 17, METERED)[1],
            "prev expiry": ledger.meteredPeriodsOf(who, 1)[3],
        }
        for who in licensees
    ]
    return {
        "ledger": ledger,
        "yul": _rpc("eth_getCode", [ledger.address, "latest"]),
        "reference": _rpc("eth_getCode", [reference.address, "latest"]),
        "licensees": licensees,
        "devices": devices,
        "anchors": anchors,
        "strangers": [Account.create() for _ in range(2)],
    }


# --- the random call -------------------------------------------------------------------------

st_entries = st.one_of(
    st.dictionaries(st.sampled_from(POOL), st.sampled_from([1, 2, 7, 60, 150, 65_535]), min_size=1, max_size=5).map(
        lambda d: sorted(d.items())
    ),
    st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from([0, 1, 3])), min_size=0, max_size=4),  # maybe malformed
    # Many distinct (unregistered) works: fills a 16-row table (WorkTableFull).
    st.sets(st.integers(1_000, 1_040), min_size=6, max_size=16).map(lambda ws: [(w, 1) for w in sorted(ws)]),
)
st_batch = st.fixed_dictionaries(
    {
        "device": st.integers(0, 3),  # 3 (or past the licensee's devices): an unknown number
        "nonce": st.one_of(  # chunk and archive-word edges, the nonces used in the scene
            st.integers(0, 5),
            st.integers(62, 66),
            st.sampled_from([69, 70, 71, 127, 128, 199, 200, 201]),
            st.integers(254, 258),
            st.sampled_from([299, 300, 301, 319, 320, 511, 512]),
            st.just(2**32 - 1),
        ),
        "to": st.one_of(  # two times in three on an edge: revocation, period ends, clock skew
            st.sampled_from(ANCHORS),
            st.sampled_from(ANCHORS),
            st.integers(-3 * DAY, 2_000),
        ),
        "to_nudge": st.sampled_from([0, 0, 1, -1]),
        "span": st.sampled_from([0, 60, 3_600, -1]),  # fromTime = toTime - span (-1: from > to)
        "entries": st_entries,
        "signer": st.sampled_from(["device"] * 5 + ["stranger", "tampered", "high-s"]),
        "repeat": st.booleans(),  # send the same batch again right after
    }
)
st_call = st.fixed_dictionaries(
    {
        "bits": st.sampled_from([4, 4, 5, 8]),
        "groups": st.lists(
            st.tuples(st.integers(0, 3), st.lists(st_batch, min_size=1, max_size=3)), min_size=1, max_size=3
        ),
        "truncate": st.sampled_from([0] * 12 + [1, 7]),
    }
)


def _sign(ledger, key, nonce, from_time, to_time, entries):
    digest = batch_digest(chain.id, ledger.address, key.address, nonce, from_time, to_time, entries)
    sig = key.unsafe_sign_hash(digest)
    return to_compact_signature(sig.r, sig.s, sig.v)


def _time(spec, nudge, anchors, now):
    """toTime for `spec`: an anchor of the licensee, or seconds from the block time."""
    if spec == "now":
        base = now - 60
    elif spec == "skew":
        base = now + 900
    elif isinstance(spec, str):
        base = anchors[spec]
    else:
        base = now + spec
    return max(0, min(2**32 - 1, base + nudge))


def build_call(scene, call, now):
    ledger, devices = scene["ledger"], scene["devices"]
    body = bytearray()
    for who, batches in call["groups"]:
        index = who + 1 if who < 3 else 77  # licensee indexes 1..3; 77 has no devices
        encoded = []
        for b in batches:
            known = devices[who] if who < 3 else []
            device = known[b["device"]] if b["device"] < len(known) else None
            number = device.number if device else 9
            key = device.key if device else scene["strangers"][0]
            to_time = _time(b["to"], b["to_nudge"], scene["anchors"][min(who, 2)], now)
            from_time = to_time + 1 if b["span"] < 0 else max(0, to_time - b["span"])
            entries = b"".join(struct.pack(">IH", w, c) for w, c in b["entries"])
            signer = scene["strangers"][1] if b["signer"] == "stranger" else key
            sig = _sign(ledger, signer, b["nonce"], from_time, to_time, entries)
            if b["signer"] == "tampered" and entries:
                entries = entries[:-1] + bytes([entries[-1] ^ 1])
            if b["signer"] == "high-s":
                r, vs = sig[:32], int.from_bytes(sig[32:], "big")
                y, s = vs >> 255, vs & ((1 << 255) - 1)
                sig = r + (((1 - y) << 255) | (SECP256K1_N - s)).to_bytes(32, "big")
            n = len(entries) // 6
            one = struct.pack(">IIIIH", number, b["nonce"], from_time, to_time, n) + entries + sig
            encoded.append(one)
            if b["repeat"]:
                encoded.append(one)
        encoded = encoded[:0xFFFF]
        body += struct.pack(">IH", index, len(encoded)) + b"".join(encoded)
    data = bytes([call["bits"]]) + bytes(body)
    if call["truncate"] and len(data) > call["truncate"]:
        data = data[: -call["truncate"]]
    return data


# --- running it twice ------------------------------------------------------------------------


def run(scene, code, data, timestamp):
    """Runs submitBatches(data) with `code` at the ledger's address; returns what it did."""
    ledger = scene["ledger"]
    snapshot = _rpc("evm_snapshot", [])
    try:
        _rpc("anvil_setCode", [ledger.address, code])
        _rpc("evm_setNextBlockTimestamp", [timestamp])
        tx_hash = web3.eth.send_transaction(
            {
                "from": accounts[7].address,
                "to": ledger.address,
                "gas": 16_000_000,
                "data": ledger.submitBatches.encode_input(data),
            }
        )
        receipt = web3.eth.wait_for_transaction_receipt(tx_hash)
        if COVERAGE_FILE and code == scene["yul"]:
            _record_coverage(web3.to_hex(tx_hash))
        trace = _rpc("debug_traceTransaction", [web3.to_hex(tx_hash), {"tracer": "callTracer"}])
        diff = _rpc(
            "debug_traceTransaction",
            [web3.to_hex(tx_hash), {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}],
        )
        storage = {
            side: {
                addr: dict(sorted((acct.get("storage") or {}).items()))
                for addr, acct in diff[side].items()
                if addr.lower() == ledger.address.lower()
            }
            for side in ("pre", "post")
        }
        return {
            "status": receipt.status,
            "output": trace.get("output"),
            "logs": [
                (log.address, [web3.to_hex(t) for t in log.topics], web3.to_hex(log.data)) for log in receipt.logs
            ],
            "storage": storage,
        }
    finally:
        _rpc("evm_revert", [snapshot])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(call=st_call)
def test_yul_play_path_matches_solidity_reference(scene, call):
    timestamp = web3.eth.get_block("latest").timestamp + 5
    data = build_call(scene, call, timestamp)

    yul = run(scene, scene["yul"], data, timestamp)
    reference = run(scene, scene["reference"], data, timestamp)

    _record_outcomes(yul)
    assert yul["status"] == reference["status"]
    assert yul["output"] == reference["output"]
    assert yul["logs"] == reference["logs"]
    assert yul["storage"] == reference["storage"]


def _record_coverage(tx_hash):
    """Adds the ledger's program counters (call depth 1) of one traced run to COVERAGE."""
    steps = _rpc(
        "debug_traceTransaction",
        [tx_hash, {"disableStack": True, "disableMemory": True, "disableStorage": True}],
    )["structLogs"]
    steps = [(step["pc"], step["op"]) for step in steps if step["depth"] == 1]
    assert steps, "no opcode trace: PLAY_PATH_COVERAGE needs Anvil started with --steps-tracing"
    for i, (pc, op) in enumerate(steps):
        seen = COVERAGE.setdefault(pc, set())
        seen.add("next")
        if op == "JUMPI" and i + 1 < len(steps):
            seen.add("fall" if steps[i + 1][0] == pc + 1 else "jump")


@pytest.fixture(scope="module", autouse=True)
def _write_coverage():
    yield
    if COVERAGE_FILE:
        with open(COVERAGE_FILE, "w") as out:
            json.dump({str(pc): sorted(seen) for pc, seen in sorted(COVERAGE.items())}, out)


def _record_outcomes(result):
    """Hypothesis statistics (--hypothesis-show-statistics): which outcomes the examples reached."""
    if result["status"] != 1:
        event(f"call reverted {(result['output'] or '')[:10]}")
        return
    skip_topic = web3.keccak(text="BatchSkipped(uint64,uint32,uint8)").hex()
    played_topic = web3.keccak(text="PlaysRecorded(bytes)").hex()
    for _, topics, data in result["logs"]:
        if topics[0].removeprefix("0x") == skip_topic.removeprefix("0x"):
            event(f"skipped {SKIP_REASONS[int(data[-64:], 16)]}")
        elif topics[0].removeprefix("0x") == played_topic.removeprefix("0x"):
            raw = bytes.fromhex(data.removeprefix("0x"))
            records = decode_play_records(raw[64 : 64 + int.from_bytes(raw[32:64], "big")])
            event("applied, charged" if any(r.charged for r in records) else "applied, nothing charged")
