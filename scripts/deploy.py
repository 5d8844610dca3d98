"""Deploys the ledger to the active brownie network and writes deployments/<chain id>.json.

    brownie run scripts/deploy.py --network development

Settles in LEDGER_TOKEN_ADDRESS when it is set (production: a real stablecoin); otherwise it
also deploys the devnet-only TestStablecoin (6 decimals, faucet).
"""
import json
import os
from pathlib import Path

from brownie import RoyaltyLedger, TestStablecoin, WorkRegistry, accounts, chain, network, web3

DEPLOYMENTS = Path(__file__).resolve().parent.parent / "deployments"


def deploy(deployer=None):
    """Deploys token (devnet only), registry and ledger; returns them and writes the file."""
    deployer = deployer or accounts[0]
    start_block = web3.eth.block_number
    token_address = os.environ.get("LEDGER_TOKEN_ADDRESS")
    contracts = {}
    if token_address:
        token = None
        token_address = web3.to_checksum_address(token_address)
        # The same key and ABI as `ledger deploy` uses for an external settlement token.
        contracts["Token"] = {"address": token_address, "abi": TestStablecoin.abi}
    else:
        token = TestStablecoin.deploy({"from": deployer})
        token_address = token.address
        contracts["TestStablecoin"] = {"address": token.address, "abi": TestStablecoin.abi}
    works = WorkRegistry.deploy({"from": deployer})
    ledger = RoyaltyLedger.deploy(token_address, works.address, {"from": deployer})
    contracts["WorkRegistry"] = {"address": works.address, "abi": WorkRegistry.abi}
    contracts["RoyaltyLedger"] = {"address": ledger.address, "abi": RoyaltyLedger.abi}
    record = {
        "chainId": chain.id,
        "deployBlock": start_block + 1,
        "deployer": deployer.address,
        "token": token_address,
        "contracts": contracts,
    }
    DEPLOYMENTS.mkdir(exist_ok=True)
    (DEPLOYMENTS / f"{chain.id}.json").write_text(json.dumps(record, indent=2))
    return token, works, ledger


def main():
    token, works, ledger = deploy()
    print(f"network        {network.show_active()} (chain id {chain.id})")
    if token is not None:
        print(f"TestStablecoin {token.address}")
    print(f"WorkRegistry   {works.address}")
    print(f"RoyaltyLedger  {ledger.address}")
    print(f"written        deployments/{chain.id}.json")
