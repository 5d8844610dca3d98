"""W1 and W1-small of the benchmark workloads: gas per reported play through the relayer path.

    python scripts/gas_w1.py                  # full workloads on brownie's `bench` network (make gas)
    python scripts/gas_w1.py --smoke          # a few batches (make test)
    brownie run scripts/gas_w1.py main        # the same from brownie (not from a path with dots)

Workloads (fixed, seed 42): 200 works with 5,000/3,000/2,000 splits and METERED terms at 1,000
units per play; 20 licensees with a METERED license on every work; W1: 200 devices x 5 batches
of 1,000 plays over 25 works (Zipf s=1.1); W1-small: 2,000 devices x 1 batch of 20 plays over 15
works. Each is sent twice (fresh nonces); round 2 is steady state. Calls are packed by
ledger.playbatch.plan_calls, the relayer's packer: at most 128 KiB of input per transaction.
Figures are printed and written to reports/gas_w1.json.
"""

import json
import random
import time
from pathlib import Path

from brownie import accounts, chain, network, project, web3
from eth_account import Account
from eth_account.messages import encode_typed_data
from web3.logs import DISCARD

from ledger.playbatch import (
    MAX_CALL_BYTES,
    QueuedBatch,
    call_input_size,
    decode_play_records,
    encode_call,
    encode_entries,
    pack_split,
    plan_calls,
    shrink_for_gas,
    sign_batch,
)

SEED = 42
ZIPF_S = 1.1
RATE = 1_000
METERED, FLAT = 1, 0
SPLIT_BPS = [5_000, 3_000, 2_000]
MAX_TX_GAS = 15_000_000
REPORT = Path(__file__).resolve().parent.parent / "reports" / "gas_w1.json"

FULL = dict(
    works=200,
    licensees=20,
    w1_devices=10,
    w1_batches=5,
    w1_plays=1_000,
    w1_works=25,
    small_devices=100,
    small_plays=20,
    small_works=15,
)
SMOKE = dict(
    works=30,
    licensees=2,
    w1_devices=2,
    w1_batches=2,
    w1_plays=1_000,
    w1_works=25,
    small_devices=5,
    small_plays=20,
    small_works=15,
)


def zipf_weights(n):
    return [1 / (k**ZIPF_S) for k in range(1, n + 1)]


def draw_batch(rng, weights, plays, distinct):
    """`plays` plays over `distinct` different works, both drawn with Zipf weights."""
    ids = list(range(1, len(weights) + 1))
    chosen = set()
    while len(chosen) < distinct:
        chosen.add(rng.choices(ids, weights=weights)[0])
    chosen = sorted(chosen)
    w = [weights[i - 1] for i in chosen]
    counts = dict.fromkeys(chosen, 1)
    for work in rng.choices(chosen, weights=w, k=plays - distinct):
        counts[work] += 1
    return counts


ROOT = Path(__file__).resolve().parent.parent


def _containers():
    """(RoyaltyLedger, TestStablecoin, WorkRegistry, TrustedForwarder) of the loaded (or now
    loaded) project."""
    loaded = project.get_loaded_projects()
    p = loaded[0] if loaded else project.load(ROOT, name="RoyaltyProject")
    return p.RoyaltyLedger, p.TestStablecoin, p.WorkRegistry, p.TrustedForwarder


def registration_signature(device, ledger_address, licensee, nonce=0):
    """The device key's proof of possession (see IDeviceRegistry), 65 bytes r|s|v."""
    signable = encode_typed_data(
        domain_data={"name": "RoyaltyLedger", "version": "1", "chainId": chain.id, "verifyingContract": ledger_address},
        message_types={
            "DeviceRegistration": [
                {"name": "device", "type": "address"},
                {"name": "licensee", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ]
        },
        message_data={"device": device.address, "licensee": licensee, "nonce": nonce},
    )
    sig = device.sign_message(signable)
    return sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])


def _w3(container, deployed):
    return web3.eth.contract(address=deployed.address, abi=container.abi)


def send(call, sender, gas=None):
    """Sends through the node's unlocked/impersonated account and waits; raises on revert."""
    params = {"from": getattr(sender, "address", sender)}
    if gas:
        params["gas"] = gas
    receipt = web3.eth.wait_for_transaction_receipt(call.transact(params))
    if receipt.status != 1:
        try:
            call.call(params, block_identifier=receipt.blockNumber - 1)
            why = "no revert data"
        except Exception as exc:  # noqa: BLE001 - the node's revert reason, for the report
            why = repr(exc)
        raise RuntimeError(f"transaction reverted (gas used {receipt.gasUsed}): {why}")
    receipt = dict(receipt)
    receipt["gas_used"] = receipt["gasUsed"]
    return receipt


def setup(p):
    RoyaltyLedger, TestStablecoin, WorkRegistry, TrustedForwarder = _containers()
    deployer = accounts[0]
    silent = {"from": deployer, "silent": True}
    token = _w3(TestStablecoin, TestStablecoin.deploy(silent))
    forwarder = TrustedForwarder.deploy(silent)
    works = _w3(WorkRegistry, WorkRegistry.deploy(forwarder.address, silent))
    ledger = _w3(RoyaltyLedger, RoyaltyLedger.deploy(token.address, works.address, forwarder.address, silent))
    gas = {}
    artist, label, writer = accounts[1], accounts[2], accounts[3]
    # A split lists its payees in ascending address order (IPayouts).
    payees = sorted([artist.address, label.address, writer.address], key=lambda a: int(a, 16))
    for i in range(p["works"]):
        t = send(works.functions.registerWork(f"ipfs://work/{i + 1}", f"QZK6P26{i + 1:05d}".encode()), artist)
        gas.setdefault("register work", t["gas_used"])
        work_id = works.events.WorkRegistered().process_receipt(t, errors=DISCARD)[0]["args"]["workId"]
        t = send(ledger.functions.setSplit(work_id, payees, SPLIT_BPS, [], []), artist)
        gas.setdefault("set split (3 payees)", t["gas_used"])
        t = send(ledger.functions.setTerms(work_id, METERED, 0, RATE, 365 * 86400, True), artist)
        gas.setdefault("set terms", t["gas_used"])

    licensees = [Account.create() for _ in range(p["licensees"])]
    keys = {}
    for n, lic in enumerate(licensees):
        acct = lic.address
        web3.provider.make_request("anvil_impersonateAccount", [acct])
        web3.provider.make_request("anvil_setBalance", [acct, hex(10**19)])
        send(token.functions.mint(acct, 10_000 * 10**6), deployer)
        send(token.functions.approve(ledger.address, 2**256 - 1), acct)
        t = send(ledger.functions.deposit(2_000 * 10**6), acct)
        gas.setdefault("deposit (first)", t["gas_used"])
        t = send(ledger.functions.deposit(10**6), acct)
        gas.setdefault("deposit (again)", t["gas_used"])
        if n == 0:
            t = send(ledger.functions.buyLicense(1, METERED, 0, RATE, 0), acct)
            gas["buy license (METERED, first)"] = t["gas_used"]
            t = send(ledger.functions.buyLicense(1, METERED, 0, RATE, 0), acct)
            gas["buy license (METERED, extend)"] = t["gas_used"]
        ids = list(range(1, p["works"] + 1))
        for i in range(0, len(ids), 100):
            t = send(ledger.functions.buyLicenses(ids[i : i + 100], METERED, 0, RATE, 0), acct)
            gas.setdefault(f"buy licenses (METERED, {len(ids[i : i + 100])} works)", t["gas_used"])
        devices = [Account.create() for _ in range(p["w1_devices"] + p["small_devices"])]
        if n == 0:
            t = send(
                ledger.functions.registerDevice(
                    devices[0].address, b"GB", registration_signature(devices[0], ledger.address, acct)
                ),
                acct,
            )
            gas["register device"] = t["gas_used"]
            rest = devices[1:]
        else:
            rest = devices
        for i in range(0, len(rest), 50):
            chunk = rest[i : i + 50]
            send(
                ledger.functions.registerDevices(
                    [d.address for d in chunk],
                    [b"GB"] * len(chunk),
                    [registration_signature(d, ledger.address, acct) for d in chunk],
                ),
                acct,
            )
        index = ledger.functions.licenseeIndexOf(acct).call()
        for d in devices:
            keys[d.address] = (index, ledger.functions.deviceIdOf(d.address).call() & 0xFFFFFFFF, d)
    return token, works, ledger, licensees, keys, gas, payees


def make_round(p, rng, keys, ledger, round_no, small):
    weights = zipf_weights(p["works"])
    now = chain.time()
    queue = []
    items = sorted(keys.values(), key=lambda k: (k[0], k[1]))
    per_licensee = {}
    for index, number, key in items:
        per_licensee.setdefault(index, []).append((number, key))
    for index, devs in per_licensee.items():
        chosen = devs[p["w1_devices"] :] if small else devs[: p["w1_devices"]]
        batches = 1 if small else p["w1_batches"]
        for number, key in chosen:
            for b in range(batches):
                nonce = round_no * batches + b + 1
                counts = draw_batch(
                    rng,
                    weights,
                    p["small_plays"] if small else p["w1_plays"],
                    p["small_works"] if small else p["w1_works"],
                )
                batch = sign_batch(key, chain.id, ledger.address, nonce, now - 3600, now - 60, encode_entries(counts))
                queue.append(QueuedBatch(index, number, batch))
    return queue


def pack(ledger, queue, relayer):
    """Calls as the relayer packs them: the longest prefix (licensee, device, nonce order) under
    128 KiB of input, shrunk by ledger.playbatch.shrink_for_gas until eth_estimateGas is at most
    MAX_TX_GAS; the rest goes into the next call."""
    remaining = plan_calls(queue, MAX_CALL_BYTES)
    remaining = [q for call in remaining for q in call]
    calls = []
    while remaining:
        call = plan_calls(remaining, MAX_CALL_BYTES)[0]
        while True:
            try:
                estimate = ledger.functions.submitBatches(encode_call(call)).estimate_gas(
                    {"from": relayer.address, "gas": 29_000_000}
                )
            except ValueError as exc:  # needs more than the estimate's own cap: halve and retry
                if "gas" not in str(exc) or len(call) == 1:
                    raise
                call = call[: len(call) // 2]
                continue
            if estimate <= MAX_TX_GAS or len(call) == 1:
                break
            call = call[: shrink_for_gas(len(call), estimate, MAX_TX_GAS)]
        calls.append(call)
        remaining = remaining[len(call) :]
    return calls


def send_round(ledger, queue, relayer):
    calls = pack(ledger, queue, relayer)
    gas_used, biggest_gas, biggest_bytes, applied = 0, 0, 0, 0
    plays = sum(q.batch.plays for q in queue)
    for call in calls:
        data = encode_call(call)
        size = call_input_size(len(data))
        t = send(ledger.functions.submitBatches(data), relayer, gas=MAX_TX_GAS)
        skipped = ledger.events.BatchSkipped().process_receipt(t, errors=DISCARD)
        if skipped:
            raise RuntimeError(f"{len(skipped)} batches skipped, first: {dict(skipped[0]['args'])}")
        for event in ledger.events.PlaysRecorded().process_receipt(t, errors=DISCARD):
            applied += len(decode_play_records(event["args"]["records"]))
        gas_used += t["gas_used"]
        biggest_gas = max(biggest_gas, t["gas_used"])
        biggest_bytes = max(biggest_bytes, size)
    if applied != len(queue):
        raise RuntimeError(f"{applied} of {len(queue)} batches applied")
    return {
        "batches": len(queue),
        "plays": plays,
        "transactions": len(calls),
        "gas": gas_used,
        "gas_per_play": round(gas_used / plays, 2),
        "gas_per_batch": round(gas_used / len(queue)),
        "largest_tx_gas": biggest_gas,
        "largest_tx_bytes": biggest_bytes,
    }


def payout_gas(token, ledger, payees):
    """Distribute to 3 payees and withdraw, in steady state (balances already non-zero).
    "distribute" is `distributePacked` (one word per payee, what ledger.chain sends); the
    two-array `distribute` is measured too."""
    artist = accounts[1]
    gas = {}
    packed = pack_split(payees, SPLIT_BPS)
    t = send(ledger.functions.distributePacked(1, packed), accounts[5])
    gas["distribute (3 payees, first credits)"] = t["gas_used"]
    t = send(ledger.functions.distributePacked(2, packed), accounts[5])
    gas["distribute (3 payees, steady)"] = t["gas_used"]
    # the same with the split as two arrays (distribute), steady state
    t = send(ledger.functions.distribute(4, payees, SPLIT_BPS), accounts[5])
    gas["distribute, two arrays (3 payees, steady)"] = t["gas_used"]
    funded = accounts[6].address
    send(token.functions.mint(funded, 1), accounts[0])
    t = send(ledger.functions.withdraw(funded), artist)
    gas["withdraw (whole balance, to funded address)"] = t["gas_used"]
    send(ledger.functions.distribute(3, payees, SPLIT_BPS), accounts[5])
    t = send(ledger.functions.withdraw(accounts[7].address), artist)
    gas["withdraw (whole balance, to empty address)"] = t["gas_used"]
    return gas


def main(mode="full"):
    p = SMOKE if mode == "smoke" else FULL
    started = time.time()
    token, works, ledger, licensees, keys, gas, payees = setup(p)
    rng = random.Random(SEED)
    relayer = accounts[9]
    results = {}
    for name, small in (("W1", False), ("W1-small", True)):
        for round_no in (0, 1):
            queue = make_round(p, rng, keys, ledger, round_no, small)
            results[f"{name} round {round_no + 1}"] = send_round(ledger, queue, relayer)
    gas.update(payout_gas(token, ledger, payees))
    report = {"mode": mode, "workloads": results, "functions": gas, "seconds": round(time.time() - started, 1)}
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    print()
    print(
        f"{'workload':<20}{'batches':>8}{'plays':>10}{'txs':>5}{'gas/play':>10}{'gas/batch':>10}"
        f"{'largest tx gas':>16}{'largest tx bytes':>18}"
    )
    for k, r in results.items():
        print(
            f"{k:<20}{r['batches']:>8}{r['plays']:>10}{r['transactions']:>5}{r['gas_per_play']:>10}"
            f"{r['gas_per_batch']:>10}{r['largest_tx_gas']:>16}{r['largest_tx_bytes']:>18}"
        )
    print()
    for k, v in gas.items():
        print(f"{k:<48}{v:>10}")
    print(f"\nwritten {REPORT.relative_to(REPORT.parent.parent)} ({report['seconds']} s)")
    return report


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="W1 and W1-small gas figures (docs/benchmarks.md).")
    parser.add_argument("--smoke", action="store_true", help="a few batches only, as in make test")
    parser.add_argument("--network", default="bench", help="brownie network (default: bench)")
    options = parser.parse_args()
    _containers()
    network.connect(options.network)
    try:
        main("smoke" if options.smoke else "full")
    finally:
        network.disconnect()
