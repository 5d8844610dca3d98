"""Where the play path's gas goes: per batch and per entry, from receipts and opcode traces.

    anvil --steps-tracing --port 8547 --gas-limit 30000000 --block-base-fee-per-gas 0 &
    brownie run scripts/profile_play_path.py --network bench      (brownie attaches to it)

Sends calls of 20 and 40 batches with 1 and 25 entries over warmed-up works and prints the
differences: gas and EVM steps per batch and per entry, by opcode. See docs/gas.md.
"""

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gas_w1 as g  # noqa: E402
from brownie import accounts, chain, web3  # noqa: E402

from ledger.playbatch import QueuedBatch, encode_call, encode_entries, sign_batch  # noqa: E402


def main():
    p = dict(g.FULL, works=60, licensees=1, small_devices=0)
    token, works, ledger, lic, keys, gas, payees = g.setup(p)
    devs = sorted(keys.values(), key=lambda k: k[1])
    now = chain.time()
    nonce = [0]

    def call(k, nentries):
        q = []
        for i in range(k):
            idx, num, key = devs[i % len(devs)]
            nonce[0] += 1
            counts = {w: 40 for w in range(1, nentries + 1)}
            batch = sign_batch(key, chain.id, ledger.address, nonce[0], now - 100, now - 50, encode_entries(counts))
            q.append(QueuedBatch(idx, num, batch))
        return g.send(ledger.functions.submitBatches(encode_call(q)), accounts[9], gas=29_000_000)

    call(10, 50)  # warm the works, licenses and devices

    def stats(k, ne):
        t = call(k, ne)
        res = web3.provider.make_request("debug_traceTransaction", [t["transactionHash"].hex(), {}])["result"]
        logs = res["structLogs"]
        byop: collections.Counter[str] = collections.Counter()
        cnt: collections.Counter[str] = collections.Counter()
        for step in logs:
            if step["op"] == "STATICCALL":
                continue
            byop[step["op"]] += step["gasCost"]
            cnt[step["op"]] += 1
        return t["gasUsed"], len(logs), byop, cnt

    r = {(k, ne): stats(k, ne) for ne in (1, 25) for k in (20, 40)}
    d25 = [r[(40, 25)][i] - r[(20, 25)][i] for i in (0, 1)]
    d1 = [r[(40, 1)][i] - r[(20, 1)][i] for i in (0, 1)]
    print("per batch (1 entry): gas", d1[0] / 20, "steps", d1[1] / 20)
    print("per hit entry: gas", (d25[0] - d1[0]) / 480, "steps", (d25[1] - d1[1]) / 480)
    ops = collections.Counter()
    for o in set(r[(40, 25)][2]) | set(r[(20, 25)][2]):
        ops[o] = ((r[(40, 25)][2][o] - r[(20, 25)][2][o]) - (r[(40, 1)][2][o] - r[(20, 1)][2][o])) / 480
    print("per entry by op", [(o, round(v, 1)) for o, v in ops.most_common(25)])
    ops = collections.Counter()
    for o in set(r[(40, 1)][2]) | set(r[(20, 1)][2]):
        ops[o] = (r[(40, 1)][2][o] - r[(20, 1)][2][o]) / 20
    print("per batch by op", [(o, round(v, 1)) for o, v in ops.most_common(30)])
