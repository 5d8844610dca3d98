"""Where distributePacked's gas goes (3 payees, steady state), from its opcode trace.

    anvil --steps-tracing --port 8547 --gas-limit 30000000 --block-base-fee-per-gas 0 &
    brownie run scripts/profile_distribute.py --network bench      (brownie attaches to it)

Builds the smoke-size W1 scene of scripts/gas_w1.py (so works 1 and 2 have accruals), credits
the payees once (work 1) and traces the steady-state call (work 2). Prints the receipt's gas,
what the EVM charges before any code runs (21,000, calldata, storage and the event) and the
code's gas and steps in four parts: Solidity's dispatcher, the ABI decoder and the function's
entry (up to the first KECCAK256), the body up to the event, and the return. See docs/gas.md.
"""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gas_w1 as g  # noqa: E402
from brownie import accounts, web3  # noqa: E402

#: Opcodes whose cost is storage or the event: "before any code" in docs/gas.md.
STORAGE_AND_EVENT = {"SLOAD", "SSTORE", "LOG0", "LOG1", "LOG2", "LOG3", "LOG4"}


def main():
    p = g.SMOKE
    token, works, ledger, licensees, keys, gas, payees = g.setup(p)
    rng = random.Random(g.SEED)
    for small in (False, True):
        for round_no in (0, 1):
            g.send_round(ledger, g.make_round(p, rng, keys, ledger, round_no, small), accounts[9])
    packed = g.pack_split(payees, g.SPLIT_BPS)
    g.send(ledger.functions.distributePacked(1, packed), accounts[5])
    receipt = g.send(ledger.functions.distributePacked(2, packed), accounts[5])
    tx_hash = receipt["transactionHash"].hex()
    steps = web3.provider.make_request(
        "debug_traceTransaction", [tx_hash, {"disableStack": True, "disableMemory": True, "disableStorage": True}]
    )["result"]["structLogs"]
    steps = [s for s in steps if s["depth"] == 1]
    data = bytes(web3.eth.get_transaction(tx_hash)["input"])
    calldata = sum(16 if b else 4 for b in data)
    storage = sum(s["gasCost"] for s in steps if s["op"] in STORAGE_AND_EVENT)
    first_hash = next(i for i, s in enumerate(steps) if s["op"] == "KECCAK256")
    event = next(i for i, s in enumerate(steps) if s["op"].startswith("LOG"))
    # Solidity's dispatcher ends where the ABI decoder starts: at the second CALLDATASIZE (the
    # first checks for a selector).
    decoder = [i for i, s in enumerate(steps[:first_hash]) if s["op"] == "CALLDATASIZE"][1] - 3
    parts = {
        "dispatcher (selector search)": steps[:decoder],
        "ABI decoder and entry": steps[decoder:first_hash],
        "body": steps[first_hash : event + 1],
        "return": steps[event + 1 :],
    }
    print(f"distributePacked, 3 payees, steady: {receipt['gas_used']} gas")
    print(f"before any code: 21,000 + calldata {calldata} ({len(data)} bytes) + storage and event {storage}")
    code = 0
    for name, part in parts.items():
        cost = sum(s["gasCost"] for s in part if s["op"] not in STORAGE_AND_EVENT)
        code += cost
        print(f"  {name:<28}{cost:>6} gas {len(part):>5} steps")
    print(f"  {'code':<28}{code:>6} gas {len(steps):>5} steps")
    print(f"  check: 21,000 + calldata + storage and event + code = {21_000 + calldata + storage + code}")
