"""Authorization matrix: every role and user tries the others' pages and API routes and gets
403/404 (or a log-in), never data. Work 1 "Blue Hour" is alice's (label is a 30% payee); work 2
is bob's alone.

The cases differ in who asks, not in what the database does: role checks are Python, and an
owner's or licensee's rows are found by the same queries whoever asks. So the two large matrices
(pages and API routes, device pages) run every case on SQLite and a representative subset on
PostgreSQL: each route's allowed cases (its queries) and one refused case, the refused roles taken
in turn so that every route, role and status is met there at least once
(test_postgresql_subset_covers_every_route_and_role)."""

import pytest
from devices_seed import BAR, RIVAL, seed_devices
from portal_support import PASSWORD, SECRET, Portal, csrf_of

from ledger import accounts, devices, gasless

ALLOWED = 200
# who -> expected status; "anon" is not logged in (pages redirect to log-in, the API says 401)
PAGES = {
    "/artist/works/1": {"alice": ALLOWED, "bob": 404, "multi": 404, "label": 403, "lic": 403, "anon": 302},
    "/artist/works/2": {"alice": 404, "bob": ALLOWED, "multi": 404, "label": 403, "lic": 403, "anon": 302},
    "/label/works/1": {"label": ALLOWED, "multi": 404, "alice": 403, "bob": 403, "lic": 403, "anon": 302},
    "/label/works/2": {"label": 404, "multi": 404, "alice": 403, "bob": 403, "lic": 403, "anon": 302},
    "/artist/": {"alice": ALLOWED, "bob": ALLOWED, "label": 403, "lic": 403, "anon": 302},
    "/label/": {"label": ALLOWED, "multi": ALLOWED, "alice": 403, "lic": 403, "anon": 302},
    "/label/tokens": {"label": ALLOWED, "alice": 403, "bob": 403, "lic": 403, "anon": 302},
    "/api/v1/works/1": {"alice": ALLOWED, "label": ALLOWED, "bob": 404, "multi": 404, "lic": 404, "anon": 401},
    "/api/v1/works/2": {"bob": ALLOWED, "alice": 404, "label": 404, "multi": 404, "lic": 404, "anon": 401},
    "/api/v1/works/1/plays": {"alice": ALLOWED, "label": ALLOWED, "bob": 404, "multi": 404, "lic": 404, "anon": 401},
    "/api/v1/works/2/plays": {"bob": ALLOWED, "alice": 404, "label": 404, "lic": 404, "anon": 401},
    "/api/v1/works/3": {"alice": 404, "bob": 404, "label": 404, "anon": 401},
    **{
        f"/licensee/{page}": {"lic": ALLOWED, "alice": 403, "bob": 403, "label": 403, "multi": 403, "anon": 302}
        for page in ("", "?q=blue", "basket", "licenses", "escrow", "actions")
    },
}
SECRETS = {1: "Blue Hour", 2: "Bob&#39;s Song"}


def _on_both_databases(matrix: dict[str, dict[str, int]]) -> list:
    """(db_url, path, who, status): every case on SQLite; on PostgreSQL each path's allowed cases
    and one refused case, the least used refused role first (so each role is refused once)."""
    cases = [
        pytest.param("sqlite", p, w, s, id=f"sqlite-{p}-{w}")
        for p, expected in matrix.items()
        for w, s in expected.items()
    ]
    refused_count: dict[str, int] = {}
    for path, expected in matrix.items():
        chosen = [w for w, s in expected.items() if s == ALLOWED]
        refused = [w for w, s in expected.items() if s != ALLOWED]
        if refused:
            who = min(refused, key=lambda w: (refused_count.get(w, 0), refused.index(w)))
            refused_count[who] = refused_count.get(who, 0) + 1
            chosen.append(who)
        cases += [pytest.param("postgresql", path, w, expected[w], id=f"postgresql-{path}-{w}") for w in chosen]
    return cases


def test_postgresql_subset_covers_every_route_and_role():
    for matrix in (PAGES, DEVICE_PAGES):
        pg = [c.values[1:] for c in _on_both_databases(matrix) if c.values[0] == "postgresql"]
        assert {path for path, _, _ in pg} == set(matrix)
        assert {who for _, who, _ in pg} == {w for expected in matrix.values() for w in expected}
        assert {status for _, _, status in pg} == {s for expected in matrix.values() for s in expected.values()}


@pytest.mark.parametrize("db_url, path, who, status", _on_both_databases(PAGES), indirect=["db_url"])
def test_pages_and_api_by_role_and_owner(app, as_user, seeded, path, who, status):
    portal = Portal(app) if who == "anon" else as_user(who)
    response = portal.get(path)
    assert response.status_code == status
    if status != ALLOWED:
        body = response.data.decode()
        for work_id, title in SECRETS.items():
            if f"/{work_id}" in path:
                assert title not in body and title.replace("&#39;", "'") not in body
        if path.startswith("/api/"):
            assert response.mimetype == "application/json" and "error" in response.get_json()


@pytest.mark.parametrize("who", ["bob", "label", "multi"])
def test_tokens_see_only_their_users_works(engine, client, users, seeded, who):
    secret = accounts.create_token(engine, users[who].id, "t").secret
    headers = {"Authorization": f"Bearer {secret}"}
    ids = [w["workId"] for w in client.get("/api/v1/works", headers=headers).get_json()["items"]]
    assert ids == {"bob": [2], "label": [1], "multi": []}[who]
    statement = client.get("/api/v1/statements", headers=headers).get_json()
    assert statement["payee"] == users[who].address
    assert [r["work_id"] for r in statement["rows"]] == ids
    assert client.get("/api/v1/balances", headers=headers).get_json()["address"] == users[who].address


def test_nobody_distributes_another_owners_work(as_user, engine, users, seeded):
    bob = as_user("bob")
    token = csrf_of(bob.get("/artist/").data)
    assert bob.client.post("/artist/works/1/distribute", data={"csrf_token": token}).status_code == 404
    assert gasless.actions_of(engine, users["bob"].id) == []


def test_nobody_sees_or_signs_another_users_action(as_user, engine, users):
    action = gasless.queue_action(engine, users["alice"].id, "withdraw", {"to": users["alice"].address})
    bob = as_user("bob")
    assert bob.get(f"/artist/actions/{action.id}/typed-data").status_code == 404
    token = csrf_of(bob.get("/artist/actions").data)
    response = bob.client.post(
        f"/artist/actions/{action.id}/signature", json={"signature": "0x" + "11" * 65}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 404
    assert b"withdraw" not in bob.get("/artist/actions").data


def test_statements_are_always_the_callers_own(as_user, seeded, users):
    csv = as_user("bob").get("/artist/statement?period=all").data.decode()
    assert "Blue Hour" not in csv and "Bob's Song" in csv


@pytest.mark.parametrize("who, status", [("alice", 403), ("label", 403), ("anon", 302)])
def test_licensee_action_routes_are_the_licensees_alone(app, as_user, engine, users, who, status):
    action = gasless.queue_action(engine, users["lic"].id, "deposit_with_permit", {"amount": 1})
    portal = Portal(app) if who == "anon" else as_user(who)
    for suffix in ("typed-data", "permit"):
        assert portal.get(f"/licensee/actions/{action.id}/{suffix}").status_code == status
    assert portal.client.post(f"/licensee/actions/{action.id}/signature", json={}).status_code in (400, status)


# ----------------------------------------------------------------------------- devices (licensees)
# lic has the device BAR, lic2 the device RIVAL (tests/webapp/devices_seed.py).
_NOT_LICENSEES = {"alice": 403, "label": 403, "multi": 403, "anon": 302}
DEVICE_PAGES = {
    "/licensee/devices/": {"lic": ALLOWED, "lic2": ALLOWED, **_NOT_LICENSEES},
    "/licensee/devices/register": {"lic": ALLOWED, "lic2": ALLOWED, **_NOT_LICENSEES},
    f"/licensee/devices/{BAR}": {"lic": ALLOWED, "lic2": 404, **_NOT_LICENSEES},
    f"/licensee/devices/{BAR}/provisioning.json": {"lic": ALLOWED, "lic2": 404, **_NOT_LICENSEES},
    f"/licensee/devices/{RIVAL}": {"lic": 404, "lic2": ALLOWED, **_NOT_LICENSEES},
    f"/licensee/devices/{RIVAL}/provisioning.json": {"lic": 404, "lic2": ALLOWED, **_NOT_LICENSEES},
}


@pytest.fixture
def lic2(engine, users):
    return accounts.create_user(engine, "lic2", PASSWORD, ["licensee"], SECRET)


@pytest.fixture
def device_world(engine, users, seeded, lic2):
    return seed_devices(engine, users["lic"], lic2, works=False)


@pytest.mark.parametrize("db_url, path, who, status", _on_both_databases(DEVICE_PAGES), indirect=["db_url"])
def test_device_pages_by_role_and_licensee(app, as_user, device_world, path, who, status):
    portal = Portal(app) if who == "anon" else as_user(who)
    response = portal.get(path)
    assert response.status_code == status
    body = response.data.decode()
    if status != ALLOWED:
        assert "Bar" not in body and "Rival" not in body
    elif who == "lic":
        assert RIVAL not in body and "Rival" not in body
    else:
        assert BAR not in body and ">Bar<" not in body


@pytest.mark.parametrize("who, status", [("lic2", 404), ("alice", 403), ("label", 403), ("anon", 302)])
def test_nobody_revokes_or_renames_another_licensees_device(
    app, as_user, engine, users, lic2, device_world, who, status
):
    portal = Portal(app) if who == "anon" else as_user(who)
    token = csrf_of(portal.get("/login").data)
    assert portal.client.post(f"/licensee/devices/{BAR}/revoke", data={"csrf_token": token}).status_code == status
    renamed = portal.client.post(f"/licensee/devices/{BAR}/name", data={"csrf_token": token, "name": "Mine"})
    assert renamed.status_code == status
    assert [r.name for r in devices.portal_rows(engine, users["lic"].id)] == ["Shop", "Bar"]
    for user in [*users.values(), lic2]:
        assert gasless.actions_of(engine, user.id) == []


def test_nobody_sees_or_signs_another_licensees_device_action(as_user, engine, users, lic2):
    action = gasless.queue_action(engine, users["lic"].id, "register_device", {"device": BAR})
    for who, status in (("lic2", 404), ("alice", 403)):
        portal = as_user(who)
        assert portal.get(f"/licensee/devices/actions/{action.id}/typed-data").status_code == status
        token = csrf_of(portal.get("/account").data)
        response = portal.client.post(
            f"/licensee/devices/actions/{action.id}/signature",
            json={"signature": "0x" + "11" * 65},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == status
    # an artist's action is not a device action, even for its own user
    withdraw = gasless.queue_action(engine, users["lic"].id, "withdraw", {"to": users["lic"].address})
    assert as_user("lic").get(f"/licensee/devices/actions/{withdraw.id}/typed-data").status_code == 404
