"""Artist pages: works list, registration form (validation, queued gasless action), work page,
distribute, balance and withdraw, statements matching `ledger statement`."""

import json
import re

import pytest
from eth_utils import to_checksum_address
from portal_support import csrf_of

from ledger import gasless
from ledger.statements import Period, statement

ZERO = "0x" + "0" * 40


def work_form(portal, **fields):
    data = {
        "title": "Night Drive",
        "isrc": "US-SKG-19-99999",
        "iswc": "T0345246801",
        "payees-0-payee": "alice",
        "payees-0-bps": "7000",
        "payees-1-payee": "label",
        "payees-1-bps": "3000",
        "metered": "y",
        "metered_rate": "0.002",
        "metered_fee": "0",
        "metered_days": "365",
        "flat_fee": "100",
        "flat_days": "30",
    }
    data.update(fields)
    return portal.post_form("/artist/works/new", {k: v for k, v in data.items() if v is not None})


def test_works_list_shows_owned_works_only(as_user, seeded):
    html = as_user("alice").get("/artist/").data
    assert b"Blue Hour" in html and b"US-SKG-19-12345" in html and b"Bob&#39;s Song" not in html
    assert b"$0.107" in html  # earned, exact


def test_works_list_empty_state_says_what_to_do(as_user, users):
    html = as_user("bob").get("/artist/").data
    assert b"No works yet" in html and b"Register a work" in html


def test_registration_is_queued_as_a_pending_gasless_action(as_user, engine, users):
    alice = as_user("alice")
    response = work_form(alice)
    assert response.status_code == 302
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert action.kind == "register_work" and action.status == "queued"
    params = action.arguments
    assert params["isrc"] == "USSKG1999999" and params["iswc"] == "T-034.524.680-1"
    split, metered = params["then"][0], params["then"][1]
    assert split == {
        "kind": "set_split",
        "params": {"payees": [users["alice"].address, users["label"].address], "bps": [7000, 3000]},
    }
    assert metered["params"] == {"kind": 1, "fee": 0, "rate": 2000, "duration": 365 * 86400}
    assert len(params["then"]) == 2  # FLAT not ticked
    page = alice.get("/artist/").data
    assert b"Night Drive" in page and b"queued" in page and b"On the way to the chain" in page
    assert b"gasless relayer" in page  # the flash says why it waits


def test_production_without_a_gasless_key_queues_and_says_why(engine, users):
    from portal_support import Portal, make_app

    portal = Portal(make_app(engine, env="production"))
    portal.login("alice")
    work_form(portal)
    assert b"LEDGER_GASLESS_KEY is not set" in portal.get("/artist/").data
    assert [a.status for a in gasless.actions_of(engine, users["alice"].id)] == ["queued"]


def test_registration_with_flat_terms_and_an_address_payee(as_user, engine, users):
    payee = "0x" + "ab" * 20
    work_form(as_user("alice"), **{"payees-1-payee": payee, "flat": "y", "metered": None})
    [action] = gasless.actions_of(engine, users["alice"].id)
    kinds = [(s["kind"], s["params"].get("kind")) for s in action.arguments["then"]]
    assert kinds == [("set_split", None), ("set_terms", 0)]
    assert action.arguments["then"][0]["params"]["payees"][1].lower() == payee
    assert action.arguments["then"][1]["params"]["fee"] == 100_000_000


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"iswc": "T-034.524.680-2"}, "has a wrong check digit: 2, expected 1"),
        ({"iswc": "T-034"}, "is not an ISWC"),
        ({"isrc": "US-SKG-19-1234"}, "is not an ISRC"),
        ({"isrc": "USSKG1912345"}, "is already registered"),
        ({"payees-1-bps": "2000"}, "add up to 9,000 basis points, not 10,000"),
        ({"payees-1-payee": "nobody-here"}, "no portal user is called"),
        ({"payees-1-payee": "alice"}, "already in the split"),
        ({"payees-1-payee": ZERO}, "zero address cannot be a payee"),
        ({"payees-1-payee": "0x1234"}, "is not an Ethereum address"),
        ({"payees-1-bps": ""}, "give both a payee and its basis points"),
        ({"payees-0-payee": "", "payees-0-bps": "", "payees-1-payee": "", "payees-1-bps": ""}, "at least one payee"),
        ({"payees-1-bps": "20000"}, "Number must be between 1 and 10000"),
        ({"metered_rate": "0"}, "needs a rate above $0"),
        ({"metered_rate": "0.0000001"}, "at most 6 decimals"),
        ({"title": ""}, "This field is required"),
    ],
)
def test_registration_validation_errors(as_user, engine, seeded, users, fields, message):
    response = work_form(as_user("alice"), **fields)
    assert response.status_code == 400
    assert message in response.data.decode().replace("&#39;", "'")
    assert gasless.actions_of(engine, users["alice"].id) == []


def test_a_split_of_32_payees_is_accepted_and_33_refused(as_user, engine, users):
    alice = as_user("alice")
    rows = {}
    for i in range(32):
        rows[f"payees-{i}-payee"] = "0x" + f"{i + 1:040x}"
        rows[f"payees-{i}-bps"] = str(10_000 // 32 + (10_000 % 32 if i == 0 else 0))
    assert work_form(alice, isrc="", **rows).status_code == 302
    rows["payees-32-payee"], rows["payees-32-bps"] = "0x" + "ee" * 20, "1"
    response = work_form(alice, isrc="", **rows)
    assert response.status_code == 400 and b"at most 32 payees, not 33" in response.data
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert len(action.arguments["then"][0]["params"]["payees"]) == 32


def test_registration_needs_the_artist_role(as_user, users):
    label = as_user("label")
    assert label.get("/artist/works/new").status_code == 403
    assert work_form(label).status_code in (403, 400)


def test_work_page_shows_plays_chart_licensees_unlicensed_and_split(as_user, seeded):
    html = as_user("alice").get("/artist/works/1").data.decode()
    assert "Blue Hour" in html and "T-034.524.680-1" in html
    assert 'id="time-chart"' in html and 'id="territory-chart"' in html and "/vendor/chart.umd.js" in html
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', html, re.S).group(1))
    assert sum(data["day"]["plays"]) == seeded.plays_w1 == sum(data["month"]["plays"])
    assert data["month"]["labels"] == ["2026-10", "2026-11"]
    assert data["territory"]["labels"] == ["GB", "other"]  # FR (1 device) and US (1 device) merged
    assert "METERED" in html and "$0.001 per play" in html
    assert "Unlicensed plays" in html and ">US<" in html
    assert "70.00%" in html and "30.00%" in html
    assert "Distribute to payees" in html  # $0.042 undistributed


def test_work_page_never_shows_device_addresses(as_user, seeded):
    from eth_account import Account

    html = as_user("alice").get("/artist/works/1").data.decode()
    for n in range(1, 6):  # the seeded devices' keys are bytes([n]) * 32
        assert Account.from_key(bytes([n]) * 32).address not in html


def test_distribute_is_queued_for_the_owner(as_user, engine, users, seeded):
    alice = as_user("alice")
    token = csrf_of(alice.get("/artist/works/1").data)
    response = alice.client.post("/artist/works/1/distribute", data={"csrf_token": token})
    assert response.status_code == 302
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert action.kind == "distribute" and action.work_id == 1 and action.status == "queued"


def test_balance_page_and_withdraw(as_user, engine, users, seeded):
    alice = as_user("alice")
    html = alice.get("/artist/balance").data.decode()
    assert "$0.0355" in html and "$0.0455" in html and "$0.01" in html  # available, credited, withdrawn
    response = alice.post_form("/artist/balance", {"to": "0x" + "cd" * 20})
    assert response.status_code == 302
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert action.kind == "withdraw" and action.arguments["to"] == to_checksum_address("0x" + "cd" * 20)


@pytest.mark.parametrize(
    "to, message",
    [("0x" + "zz" * 20, "not an Ethereum address"), (ZERO, "not an Ethereum address"), ("0x12", "Field must be")],
)
def test_withdraw_validation(as_user, seeded, to, message):
    response = as_user("alice").post_form("/artist/balance", {"to": to})
    assert response.status_code == 400 and message in response.data.decode()


def test_withdraw_with_nothing_to_withdraw_says_so(as_user, users):
    response = as_user("bob").post_form("/artist/balance", {"to": "0x" + "cd" * 20})
    assert response.status_code == 400 and b"nothing to withdraw yet" in response.data


@pytest.mark.parametrize("query", ["period=all&format=csv", "period=2026-11&format=json", "from=2026-10&to=2026-11"])
def test_statement_download_matches_ledger_statement(as_user, engine, seeded, query, monkeypatch, capsys):
    from ledger.cli import main

    response = as_user("alice").get(f"/artist/statement?{query}")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    args = dict(pair.split("=") for pair in query.split("&"))
    monkeypatch.setenv("LEDGER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    cli = ["statement", "--payee", seeded.alice, "--format", args.get("format", "csv")]
    cli += ["--period", args["period"]] if "period" in args else ["--from", args["from"], "--to", args["to"]]
    assert main(cli) == 0
    assert response.data.decode() == capsys.readouterr().out


def test_statement_total_equals_the_credited_balance(as_user, engine, seeded):
    doc = json.loads(as_user("alice").get("/artist/statement?period=all&format=json").data)
    assert int(doc["totals"]["net"]) == seeded.net_alice
    assert statement(engine, seeded.alice, Period()).totals.net == seeded.net_alice


@pytest.mark.parametrize("query", ["period=2026-13", "period=junk", "from=2026-12&to=2026-01", "format=xml"])
def test_statement_bad_periods_are_400(as_user, seeded, query):
    response = as_user("alice").get(f"/artist/statement?{query}")
    assert response.status_code == 400


def test_actions_page_lists_my_actions(as_user, users):
    alice = as_user("alice")
    assert b"No on-chain actions yet" in alice.get("/artist/actions").data
    work_form(alice)
    html = alice.get("/artist/actions").data
    assert b"register work: Night Drive" in html and b"queued" in html


def test_typed_data_and_signature_need_an_action_awaiting_signature(as_user, engine, users):
    alice = as_user("alice")
    work_form(alice)
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert alice.get(f"/artist/actions/{action.id}/typed-data").status_code == 409
    token = csrf_of(alice.get("/artist/actions").data)
    bad = alice.client.post(
        f"/artist/actions/{action.id}/signature", json={"signature": "0x12"}, headers={"X-CSRFToken": token}
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_signature"
