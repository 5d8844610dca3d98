"""TestStablecoin: the devnet settlement token (6 decimals, faucet)."""

import brownie

from contract_helpers import err


def test_decimals_is_six(token):
    assert token.decimals() == 6


def test_faucet_mints_up_to_limit(token, outsider):
    limit = token.FAUCET_LIMIT()

    token.faucet(outsider, limit, {"from": outsider})

    assert limit == 10_000 * 10**6
    assert token.balanceOf(outsider) == limit


def test_faucet_reverts_above_limit(token, outsider):
    limit = token.FAUCET_LIMIT()
    with brownie.reverts(err("FaucetLimitExceeded(uint256,uint256)", limit + 1, limit)):
        token.faucet(outsider, limit + 1, {"from": outsider})


def test_mint_mints_any_amount(token, outsider):
    token.mint(outsider, 10**20, {"from": outsider})
    assert token.balanceOf(outsider) == 10**20
