"""The chain client: typed calls, and reverts raised as exceptions named after the custom errors."""

from __future__ import annotations

import pytest

from ledger import errors
from ledger.playbatch import sorted_split
from ledger.chain import LicenseKind, RevertDecoder
from ledger.errors import ContractRevert, UserError


@pytest.fixture
def artist(client, history, chain_snapshot):
    return client.as_account(history.accounts["artist"])


def test_not_owner_cannot_set_split(client, history, chain_snapshot):
    shop = client.as_account(history.accounts["shop"])
    with pytest.raises(errors.NotWorkOwner) as info:
        shop.set_split(history.works["harbour"], [history.accounts["shop"]], [10000])
    assert info.value.args_dict == {"workId": history.works["harbour"], "account": history.accounts["shop"]}
    assert isinstance(info.value, ContractRevert)


def test_shares_must_total(artist, history):
    with pytest.raises(errors.SharesDoNotTotal) as info:
        artist.set_split(history.works["harbour"], [history.accounts["artist"]], [9999])
    assert info.value.args_dict["sum"] == 9999


def test_locked_split_cannot_change(client, history, chain_snapshot):
    label = client.as_account(history.accounts["label"])
    with pytest.raises(errors.SplitIsLocked):
        label.set_split(history.works["anthem"], [history.accounts["label"]], [10000])


def test_isrc_registered_once(artist):
    with pytest.raises(errors.IsrcAlreadyRegistered) as info:
        artist.register_work(title="Copy", isrc="GBABC2600001")
    assert info.value.args_dict["isrc"] == b"GBABC2600001"


def test_isrc_is_checked_before_sending(artist):
    with pytest.raises(UserError):
        artist.register_work(title="Bad", isrc="not-an-isrc")


def test_nothing_to_withdraw(client, history, chain_snapshot):
    shop = client.as_account(history.accounts["shop"])
    with pytest.raises(errors.NothingToWithdraw):
        shop.withdraw()


def test_terms_not_offered(client, history, chain_snapshot):
    shop = client.as_account(history.accounts["shop"])
    with pytest.raises(errors.TermsNotOffered):
        shop.buy_license(history.works["lullaby"], LicenseKind.FLAT)


def test_wrong_current_split_is_a_mismatch(artist, history):
    with pytest.raises(errors.SplitMismatch):
        artist.distribute(history.works["harbour"], ([history.accounts["artist"]], [10000]))


def test_typed_views(client, history):
    w = history.works
    assert client.total_works() == 4
    assert client.owner_of(w["lullaby"]) == history.accounts["label"]
    assert client.isrc_of(w["harbour"]) == "GBABC2600001"
    expected = sorted_split([history.accounts["artist"], history.accounts["newpayee"]], [5000, 5000])
    assert client.current_split(w["harbour"]) == expected  # as stored: ascending addresses
    assert client.is_split_locked(w["anthem"])
    fee, rate, duration, offered = client.terms_of(w["harbour"], LicenseKind.METERED)
    assert (fee, rate, offered) == (5_000_000, 1234, True)
    device_id, _ = history.devices["gb1"]
    assert client.device_id_of(history.devices["gb1"][1].address) == device_id
    assert client.is_nonce_used(device_id, 0)


def test_register_work_returns_the_new_id_and_escrow_round_trip(client, history, chain_snapshot):
    shop = client.as_account(history.accounts["shop"])
    work_id = shop.register_work(title="Jingle", iswc="T-000.000.001-0")
    assert work_id == 5
    client.mint(history.accounts["shop"], 100)
    shop.deposit(60)
    assert shop.escrow_of(history.accounts["shop"]) == 60
    with pytest.raises(errors.InsufficientEscrow):
        shop.request_escrow_withdrawal(61)
    available_at = shop.request_escrow_withdrawal(60)
    with pytest.raises(errors.WithdrawalNotYetAvailable):
        shop.withdraw_escrow(60)
    client.w3.provider.make_request("evm_mine", [available_at])
    shop.withdraw_escrow(60)
    assert shop.token_balance(history.accounts["shop"]) == 100


def test_revert_decoder_knows_unknown_selectors():
    decoder = RevertDecoder()
    exc = decoder.decode(bytes.fromhex("deadbeef"))
    assert isinstance(exc, errors.UnknownRevert)
    exc = decoder.decode(b"")
    assert isinstance(exc, errors.UnknownRevert)


def test_revert_decoder_makes_classes_for_abi_only_errors():
    abi = [{"type": "error", "name": "BrandNewError", "inputs": [{"name": "x", "type": "uint256"}]}]
    decoder = RevertDecoder([abi])
    from eth_utils import keccak

    data = keccak(text="BrandNewError(uint256)")[:4] + (7).to_bytes(32, "big")
    exc = decoder.decode(data)
    assert type(exc).__name__ == "BrandNewError" and exc.args_dict == {"x": 7}
    assert errors.error_class("BrandNewError") is type(exc)
