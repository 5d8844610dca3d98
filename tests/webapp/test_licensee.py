"""Licensee pages: catalogue (search, pages), basket and checkout with the buyer's limits, licenses
held and renewal, escrow (balance, warning, top-up, withdrawal under notice), actions and wallet
signatures; CSRF and other users' data. No chain here (the relayer is unavailable, so actions stay
queued); tests/webapp/test_licensee_chain.py runs them against the real contracts."""

from __future__ import annotations

import re

import pytest
from licensee_seed import seed_licensees
from portal_support import PASSWORD, SECRET, Portal, csrf_of

from ledger import accounts, gasless

FORM_PAGE = "/licensee/"


@pytest.fixture
def other(engine, users):
    """A second licensee, with a license and escrow of its own."""
    return accounts.create_user(engine, "other", PASSWORD, ["licensee"], SECRET)


@pytest.fixture
def world(engine, users, seeded, other):
    return seed_licensees(engine, users["lic"].address, other.address, filler=23)


def text(response) -> str:
    return re.sub(r"\s+", " ", response.data.decode())


def post(portal, path, data=None):
    return portal.post_form(path, data or {}, form_page=FORM_PAGE)


def add(portal, work_id, kind=None):
    return post(portal, "/licensee/basket/add", {"work_id": work_id, **({"kind": kind} if kind else {})})


# ----------------------------------------------------------------------------- catalogue


def test_catalogue_lists_works_with_their_terms(as_user, world):
    page = text(as_user("lic").get("/licensee/"))
    assert "Blue Hour" in page and "$0.001 a play · 365 days" in page  # work 1: METERED
    assert "Bob&#39;s Song" in page and "$50.00 · 30 days" in page  # work 2: FLAT
    assert "25 works" in page and "Page 1 of 2" in page and 'id="add-1"' in page


@pytest.mark.parametrize(
    "query, found",
    [
        ("blue", [1]),
        ("US-SKG-19-12345", [1]),
        ("ussk g19-12345", [1]),
        ("no such song", []),
        ("gbabc26", [2]),
        ("bob", [2]),
        ("BOB", [2]),
        ("#2", [2]),
        ("#1", [1]),
        ("#999", []),
    ],
)
def test_catalogue_search_by_title_isrc_and_artist(as_user, world, query, found):
    page = as_user("lic").get("/licensee/", query_string={"q": query}).data.decode()
    rows = [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", page)]
    assert rows == found
    if not found:
        assert "Nothing matches" in page


def test_catalogue_search_treats_like_wildcards_as_text(as_user, world):
    page = as_user("lic").get("/licensee/", query_string={"q": "%"}).data.decode()
    assert "Nothing matches" in page


def test_catalogue_pages(as_user, world):
    lic = as_user("lic")
    second = lic.get("/licensee/?page=2").data.decode()
    assert [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", second)] == list(range(21, 26))
    assert "Page 2 of 2" in second and 'id="prev-page"' in second and 'id="next-page"' not in second
    assert "No works on page 3" in lic.get("/licensee/?page=3").data.decode()
    assert lic.get("/licensee/?page=0").status_code == 400
    assert lic.get("/licensee/?page=x").status_code == 400


def test_catalogue_empty_state(as_user, users):
    assert "No works registered yet" in text(as_user("lic").get("/licensee/"))


# ----------------------------------------------------------------------------- basket and checkout


def test_basket_add_remove_and_empty_state(as_user, world):
    lic = as_user("lic")
    assert "Your basket is empty" in text(lic.get("/licensee/basket"))
    assert add(lic, 1).status_code == 302 and add(lic, 2).status_code == 302 and add(lic, 1).status_code == 302
    page = lic.get("/licensee/basket").data.decode()
    assert re.findall(r"<tr><td>(\d+)</td>", page) == ["1", "2"] and "Basket (2)" in page
    assert post(lic, "/licensee/basket/2/remove").status_code == 302
    assert re.findall(r"<tr><td>(\d+)</td>", lic.get("/licensee/basket").data.decode()) == ["1"]
    assert add(lic, 999).status_code == 404
    assert post(lic, "/licensee/basket/add", {"work_id": "x"}).status_code == 400


def test_checkout_defaults_show_the_current_terms_as_limits(as_user, world):
    lic = as_user("lic")
    add(lic, 1)
    page = lic.get("/licensee/basket").data.decode()
    assert 'name="max_fee" required type="text" value="0.00"' in page
    assert 'name="max_rate" type="text" value="0.001"' in page


@pytest.mark.parametrize(
    "basket, fields, error",
    [
        ([], {}, "your basket is empty"),
        ([1, 2], {"kind": "METERED"}, "not offered as METERED: 2 (Bob&#39;s Song)"),
        (
            [2],
            {"kind": "FLAT", "max_fee": "49.999999"},
            "the fees add up to $50.00 now, above your maximum of $49.999999",
        ),
        ([1], {"max_rate": "0.0009"}, "a work charges $0.001 a play now, above your maximum of $0.0009"),
        ([1], {"max_rate": "lots"}, "is not an amount in dollars"),
        ([1], {"max_fee": "1.0000001"}, "is not an amount in dollars"),
        ([1], {"max_rate": "3000"}, "rates are at most $2,147.483647 a play"),
        ([1], {"min_expiry": "2999-01-01"}, "would run until"),
        ([1], {"min_expiry": "2026-13-01"}, "a date as YYYY-MM-DD"),
    ],
)
def test_checkout_validation(as_user, engine, users, world, basket, fields, error):
    lic = as_user("lic")
    for work_id in basket:
        add(lic, work_id)
    data = {"kind": "METERED", "max_fee": "0", "max_rate": "0.001", "min_expiry": "", **fields}
    response = lic.post_form("/licensee/basket", data)
    assert response.status_code == 400
    assert error in response.data.decode()
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_checkout_queues_one_batch_purchase_with_the_limits(as_user, engine, users, world):
    lic = as_user("lic")
    add(lic, 1)
    response = lic.post_form(
        "/licensee/basket", {"kind": "METERED", "max_fee": "0.50", "max_rate": "0.0015", "min_expiry": "2027-01-31"}
    )
    assert response.status_code == 302 and response.location.endswith("/licensee/licenses")
    [action] = gasless.actions_of(engine, users["lic"].id)
    assert (action.kind, action.status) == ("buy_licenses", "queued")
    assert action.arguments == {
        "work_ids": [1],
        "kind": 1,
        "max_total_fee": 500_000,
        "max_rate": 1_500,
        "min_expiry": 1801353600,  # 2027-01-31T00:00:00Z
    }
    page = text(lic.get("/licensee/licenses"))
    assert "Queued: it will be sent through the gasless relayer" in page
    assert "On the way to the chain" in page and "works 1" in page
    assert "Basket (0)" in page


def test_flat_checkout_of_two_works_sums_the_fees(as_user, engine, users, world):
    from ledger.db import session_scope
    from ledger.models import Terms

    with session_scope(engine) as session:
        session.add(
            Terms(
                block_number=900,
                log_index=0,
                tx_hash="0x" + "9" * 64,
                timestamp=world.now,
                work_id=1,
                kind=0,
                fee=12_345_678,
                rate_per_play=0,
                duration=86_400,
                offered=True,
            )
        )
    lic = as_user("lic")
    add(lic, 1, kind="FLAT")
    add(lic, 2)
    page = lic.get("/licensee/basket").data.decode()
    assert 'value="62.345678"' in page and '<option selected value="FLAT">' in page
    assert lic.post_form("/licensee/basket", {"kind": "FLAT", "max_fee": "62.345678"}).status_code == 302
    [action] = gasless.actions_of(engine, users["lic"].id)
    assert action.arguments["work_ids"] == [1, 2] and action.arguments["max_total_fee"] == 62_345_678
    assert action.arguments["kind"] == 0 and action.arguments["max_rate"] == 0


# ----------------------------------------------------------------------------- licenses held


def test_licenses_held_are_the_licensees_own(as_user, world, other):
    page = text(as_user("lic").get("/licensee/licenses"))
    assert "Blue Hour" in page and "METERED" in page and 'id="renew-1-METERED"' in page and "Extend" in page
    assert "Bob&#39;s Song" not in page and "$50.00" not in page
    page = text(as_user("other").get("/licensee/licenses"))
    assert "Bob&#39;s Song" in page and "$50.00" in page and "Blue Hour" not in page


def test_licenses_empty_state(as_user, users):
    assert "No licenses yet" in text(as_user("lic").get("/licensee/licenses"))


def test_renewal_puts_the_work_in_the_basket_with_its_kind(as_user, world):
    lic = as_user("lic")
    assert add(lic, 1, kind="METERED").location.endswith("/licensee/basket")
    page = lic.get("/licensee/basket").data.decode()
    assert "Blue Hour" in page and '<option selected value="METERED">' in page


# ----------------------------------------------------------------------------- escrow


def test_escrow_shows_balance_recent_charges_and_a_warning(as_user, world):
    page = text(as_user("lic").get("/licensee/escrow"))
    assert 'id="escrow-balance">$1.75<' in page and 'id="charged-recent">$3.00<' in page
    assert "from the index (the chain is not reachable)" in page
    assert 'id="escrow-warning"' in page and "lasts about 4 more days" in page
    assert "$77.70" not in page  # the other licensee's escrow


def test_escrow_without_warning_when_it_covers_the_recent_rate(as_user, engine, users, seeded, other):
    seed_licensees(engine, users["lic"].address, other.address, lic_deposit=50_000_000)
    page = text(as_user("lic").get("/licensee/escrow"))
    assert 'id="escrow-balance">$46.75<' in page and "escrow-warning" not in page


def test_escrow_of_a_new_licensee_is_empty(as_user, users):
    page = text(as_user("lic").get("/licensee/escrow"))
    assert 'id="escrow-balance">$0.00<' in page and "No deposit yet" in page and "escrow-warning" not in page
    assert "notice of 7 days" in page


def test_top_up_is_queued_as_a_permit_deposit(as_user, engine, users, world):
    lic = as_user("lic")
    response = post(lic, "/licensee/escrow/top-up", {"topup-amount": "25.5"})
    assert response.status_code == 302
    [action] = gasless.actions_of(engine, users["lic"].id)
    assert (action.kind, action.status, action.arguments) == ("deposit_with_permit", "queued", {"amount": 25_500_000})
    assert "deposit with permit $25.50" in text(lic.get("/licensee/escrow"))


@pytest.mark.parametrize(
    "path, field, value, error",
    [
        ("/licensee/escrow/top-up", "topup-amount", "0", "must be above $0"),
        ("/licensee/escrow/top-up", "topup-amount", "-3", "is not an amount"),
        ("/licensee/escrow/top-up", "topup-amount", "", "This field is required"),
        ("/licensee/escrow/request-withdrawal", "request-amount", "1.750001", "your escrow holds $1.75"),
        ("/licensee/escrow/request-withdrawal", "request-amount", "0", "must be above $0"),
    ],
)
def test_escrow_form_validation(as_user, engine, users, world, path, field, value, error):
    response = post(as_user("lic"), path, {field: value})
    assert response.status_code == 400 and error in response.data.decode()
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_withdrawal_request_cancel_and_completion_are_queued(as_user, engine, users, world):
    lic = as_user("lic")
    assert post(lic, "/licensee/escrow/request-withdrawal", {"request-amount": "1.75"}).status_code == 302
    assert post(lic, "/licensee/escrow/cancel-withdrawal").status_code == 302
    bad = post(lic, "/licensee/escrow/withdraw", {"complete-amount": "1", "complete-to": "0x" + "0" * 40})
    assert bad.status_code == 400 and "not an Ethereum address" in bad.data.decode()
    to = "0x" + "ab" * 20
    assert post(lic, "/licensee/escrow/withdraw", {"complete-amount": "1", "complete-to": to}).status_code == 302
    kinds = [(a.kind, a.arguments) for a in reversed(gasless.actions_of(engine, users["lic"].id))]
    assert kinds == [
        ("request_escrow_withdrawal", {"amount": 1_750_000}),
        ("request_escrow_withdrawal", {"amount": 0}),
        ("withdraw_escrow", {"amount": 1_000_000, "to": "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"}),
    ]


def test_mint_needs_the_chain_and_is_refused_in_production(as_user, engine, users, world):
    lic = as_user("lic")
    response = post(lic, "/licensee/escrow/mint", {"mint-amount": "100"})
    assert response.status_code == 302
    assert "The chain is not reachable: no tokens minted" in text(lic.get("/licensee/escrow"))
    assert post(lic, "/licensee/escrow/mint", {"mint-amount": "10001"}).status_code == 400
    assert 'id="mint"' not in lic.get("/licensee/escrow").data.decode()  # no test token known: no button


def test_mint_route_does_not_exist_in_production(engine, users):
    from portal_support import make_app

    portal = Portal(make_app(engine, env="production"))
    portal.login("lic")
    assert post(portal, "/licensee/escrow/mint", {"mint-amount": "100"}).status_code == 404


# ----------------------------------------------------------------------------- actions, CSRF, wallets


def test_actions_page_lists_only_the_licensees_actions(as_user, engine, users, other):
    gasless.queue_action(engine, other.id, "deposit_with_permit", {"amount": 123_456_789})
    gasless.queue_action(engine, users["lic"].id, "request_escrow_withdrawal", {"amount": 4_000_000})
    page = text(as_user("lic").get("/licensee/actions"))
    assert "request escrow withdrawal" in page and "$4.00" in page and "$123.456789" not in page
    page = text(as_user("other").get("/licensee/actions"))
    assert "deposit with permit" in page and "$123.456789" in page and "$4.00" not in page


def test_actions_empty_state(as_user, users):
    assert "No on-chain actions yet" in text(as_user("lic").get("/licensee/actions"))


def test_nobody_signs_another_licensees_action(as_user, engine, users, other):
    action = gasless.queue_action(engine, other.id, "deposit_with_permit", {"amount": 1})
    lic = as_user("lic")
    token = csrf_of(lic.get("/licensee/actions").data)
    for suffix in ("typed-data", "permit"):
        assert lic.get(f"/licensee/actions/{action.id}/{suffix}").status_code == 404
    for suffix in ("signature", "permit"):
        response = lic.client.post(
            f"/licensee/actions/{action.id}/{suffix}",
            json={"signature": "0x" + "11" * 65},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 404
    # an artist's action is not a licensee action, even one's own
    own = gasless.queue_action(engine, users["lic"].id, "withdraw", {"to": users["lic"].address})
    assert lic.get(f"/licensee/actions/{own.id}/typed-data").status_code == 404


def test_signature_endpoints_check_the_signature_shape_and_state(as_user, engine, users):
    action = gasless.queue_action(engine, users["lic"].id, "deposit_with_permit", {"amount": 1})
    lic = as_user("lic")
    token = csrf_of(lic.get("/licensee/actions").data)
    assert lic.get(f"/licensee/actions/{action.id}/typed-data").status_code == 409
    assert lic.get(f"/licensee/actions/{action.id}/permit").status_code == 409
    response = lic.client.post(
        f"/licensee/actions/{action.id}/signature", json={"signature": "0x12"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_signature"
    response = lic.client.post(
        f"/licensee/actions/{action.id}/permit", json={"signature": "0x" + "11" * 65}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400 and "fetch the permit" in response.get_json()["error"]["message"]


def test_a_wallet_licensees_top_up_waits_for_the_wallets_permit(app, engine):
    from eth_account import Account

    user = accounts.user_for_wallet(engine, Account.create().address, roles=("licensee",))
    portal = Portal(app)
    with portal.client.session_transaction() as s:
        s["uid"] = user.id
    assert post(portal, "/licensee/escrow/top-up", {"topup-amount": "5"}).status_code == 302
    [action] = gasless.actions_of(engine, user.id)
    assert action.status == "awaiting_permit"
    page = portal.get("/licensee/actions").data.decode()
    assert "Sign the permit with my wallet" in page and f"/licensee/actions/{action.id}/permit" in page


POSTS = [
    ("/licensee/basket/add", {"work_id": "1"}),
    ("/licensee/basket/1/remove", {}),
    ("/licensee/basket", {"kind": "METERED", "max_fee": "0", "max_rate": "0.001"}),
    ("/licensee/escrow/top-up", {"topup-amount": "1"}),
    ("/licensee/escrow/request-withdrawal", {"request-amount": "1"}),
    ("/licensee/escrow/cancel-withdrawal", {}),
    ("/licensee/escrow/withdraw", {"complete-amount": "1", "complete-to": "0x" + "ab" * 20}),
    ("/licensee/escrow/mint", {"mint-amount": "1"}),
]


@pytest.mark.parametrize("path, data", POSTS)
def test_every_form_needs_its_csrf_token(as_user, engine, users, world, path, data):
    lic = as_user("lic")
    add(lic, 1)
    response = lic.client.post(path, data=data)
    assert response.status_code == 400 and "Form not accepted" in response.data.decode()
    assert gasless.actions_of(engine, users["lic"].id) == []


@pytest.mark.parametrize("path, data", POSTS)
def test_other_roles_cannot_post_licensee_forms(as_user, engine, users, world, path, data):
    alice = as_user("alice")
    token = csrf_of(alice.get("/artist/").data)
    assert alice.client.post(path, data={**data, "csrf_token": token}).status_code == 403
    assert Portal(alice.app).client.post(path, data=data).status_code in (302, 400)
