"""Deploys the ledger to the active brownie network and writes deployments/<chain id>.json.

    brownie run scripts/deploy.py --network development

Deploys the ERC-2771 forwarder (gasless requests), the work registry and the ledger, both
trusting that forwarder. Settles in LEDGER_TOKEN_ADDRESS when it is set (production: a real
stablecoin). The devnet-only TestStablecoin (6 decimals, open faucet) is deployed only on a
devnet chain id or when LEDGER_DEPLOY_TEST_TOKEN=1 says so explicitly: an open-mint token must
never become the settlement token of a real chain by accident.
"""

import json
import os
from pathlib import Path

from brownie import (  # type: ignore[attr-defined]  # brownie adds the project's contracts at run time
    RoyaltyLedger,
    TestStablecoin,
    TrustedForwarder,
    WorkRegistry,
    accounts,
    chain,
    network,
    web3,
)

DEPLOYMENTS = Path(__file__).resolve().parent.parent / "deployments"
#: Anvil / Hardhat (31337) and Ganache / geth --dev (1337).
DEVNET_CHAIN_IDS = (1337, 31337)


class DeployError(RuntimeError):
    """The deployment was refused before anything was sent."""


def may_deploy_test_token(chain_id: int) -> bool:
    """Whether the open-mint TestStablecoin may be deployed on this chain."""
    return chain_id in DEVNET_CHAIN_IDS or os.environ.get("LEDGER_DEPLOY_TEST_TOKEN") == "1"


def deploy(deployer=None):
    """Deploys token (devnet only), forwarder, registry and ledger; returns them and writes the file."""
    deployer = deployer or accounts[0]
    token_address = os.environ.get("LEDGER_TOKEN_ADDRESS")
    if not token_address and not may_deploy_test_token(chain.id):
        raise DeployError(
            f"chain id {chain.id} is not a devnet: set LEDGER_TOKEN_ADDRESS to the settlement "
            "token (or LEDGER_DEPLOY_TEST_TOKEN=1 to deploy the open-mint test token anyway)"
        )
    start_block = web3.eth.block_number
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
    forwarder = TrustedForwarder.deploy({"from": deployer})
    works = WorkRegistry.deploy(forwarder.address, {"from": deployer})
    ledger = RoyaltyLedger.deploy(token_address, works.address, forwarder.address, {"from": deployer})
    contracts["TrustedForwarder"] = {"address": forwarder.address, "abi": TrustedForwarder.abi}
    contracts["WorkRegistry"] = {"address": works.address, "abi": WorkRegistry.abi}
    contracts["RoyaltyLedger"] = {"address": ledger.address, "abi": RoyaltyLedger.abi}
    record = {
        "chainId": chain.id,
        "deployBlock": start_block + 1,
        "deployer": deployer.address,
        "token": token_address,
        "forwarder": forwarder.address,
        "contracts": contracts,
    }
    DEPLOYMENTS.mkdir(exist_ok=True)
    (DEPLOYMENTS / f"{chain.id}.json").write_text(json.dumps(record, indent=2))
    return token, works, ledger


def main():
    token, works, ledger = deploy()
    print(f"network          {network.show_active()} (chain id {chain.id})")
    if token is not None:
        print(f"TestStablecoin   {token.address}")
    print(f"TrustedForwarder {ledger.trustedForwarder()}")
    print(f"WorkRegistry     {works.address}")
    print(f"RoyaltyLedger    {ledger.address}")
    print(f"written          deployments/{chain.id}.json")
