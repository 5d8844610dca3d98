"""Label pages: works where the label is a payee with totals per work, period and territory;
API tokens created (shown once), listed, revoked, stored hashed."""

import re

from portal_support import csrf_of

from ledger import accounts


def create_token(portal, name="accounting"):
    token = csrf_of(portal.get("/label/tokens").data)
    response = portal.client.post("/label/tokens", data={"name": name, "csrf_token": token})
    m = re.search(rb'id="new-token">([^<]+)<', response.data)
    return response, m.group(1).decode() if m else None


def test_dashboard_shows_payee_works_with_totals(as_user, seeded):
    html = as_user("label").get("/label/").data.decode()
    assert "Blue Hour" in html and "Bob&#39;s Song" not in html
    assert "30.00%" in html and "$0.0195" in html  # share and net (30% of $0.065)
    assert "2026-10" in html and "2026-11" in html and ">GB<" in html and ">other<" in html


def test_dashboard_for_one_period(as_user, seeded):
    html = as_user("label").get("/label/?period=2026-10").data.decode()
    assert "Label · 2026-10" in html and "2026-11</td>" not in html


def test_dashboard_bad_period_is_400(as_user, seeded):
    assert as_user("label").get("/label/?period=2026-00").status_code == 400


def test_dashboard_empty_state_says_what_to_do(as_user, users):
    html = as_user("multi").get("/label/").data.decode()
    assert "No works name you as a payee" in html and "multi" in html and "create an API token" in html


def test_label_work_page_and_statement(as_user, seeded):
    label = as_user("label")
    assert b"Blue Hour" in label.get("/label/works/1").data
    assert b"Distribute to payees" not in label.get("/label/works/1").data
    csv = label.get("/label/statement?period=all&format=csv").data.decode()
    assert csv.splitlines()[1].startswith("1,Blue Hour,USSKG1912345,114,107,107000,3000,19500")
    assert b"$0.0195" in label.get("/label/balance").data


def test_token_is_shown_once_and_stored_hashed(as_user, engine, users):
    label = as_user("label")
    response, secret = create_token(label)
    assert response.status_code == 201 and secret.startswith("lt_") and len(secret) > 40
    listing = label.get("/label/tokens").data.decode()
    assert secret not in listing and secret[:11] in listing and "accounting" in listing
    [stored] = accounts.list_tokens(engine, users["label"].id)
    assert stored.token_hash == accounts.hash_token(secret) and secret not in repr(stored.__dict__)


def test_token_name_is_required(as_user, users):
    response, secret = create_token(as_user("label"), name="")
    assert response.status_code == 400 and secret is None and b"This field is required" in response.data


def test_revoked_token_no_longer_opens_the_api(as_user, client, users):
    label = as_user("label")
    _, secret = create_token(label)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/works", headers=headers).status_code == 200
    [token] = accounts.list_tokens(label.app.config["LEDGER_ENGINE"], users["label"].id)
    page = label.get("/label/tokens").data
    response = label.client.post(f"/label/tokens/{token.id}/revoke", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert b"revoked" in label.get("/label/tokens").data
    denied = client.get("/api/v1/works", headers=headers)
    assert denied.status_code == 401 and denied.get_json()["error"]["code"] == "bad_token"


def test_nobody_revokes_another_users_token(as_user, users):
    _, secret = create_token(as_user("label"))
    multi = as_user("multi")
    page = multi.get("/label/tokens").data
    token_id = accounts.user_for_token(multi.app.config["LEDGER_ENGINE"], secret)[1].id
    assert multi.client.post(f"/label/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page)}).status_code == 404
    assert accounts.user_for_token(multi.app.config["LEDGER_ENGINE"], secret) is not None


def test_label_pages_need_the_label_role(as_user, users):
    alice = as_user("alice")
    for path in ("/label/", "/label/tokens", "/label/works/1", "/label/statement", "/label/balance"):
        assert alice.get(path).status_code == 403, path
