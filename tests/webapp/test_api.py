"""The JSON API v1: token or session auth, works, plays, statements, balances, pagination, the
OpenAPI document (checked against the routes), errors always JSON with a 4xx."""

import json
import re

import pytest
import yaml
from portal_support import make_app

from ledger import accounts
from ledger.statements import Period, statement


@pytest.fixture
def token(engine, users):
    return accounts.create_token(engine, users["label"].id, "tests").secret


@pytest.fixture
def alice_token(engine, users):
    return accounts.create_token(engine, users["alice"].id, "tests").secret


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def test_health_reports_each_part_and_503_when_the_node_is_down(client):
    """The test app's node URL answers nobody: the ledger cannot make progress."""
    response = client.get("/api/v1/health")
    body = response.get_json()
    assert set(body) == {"status", "chain", "database", "indexer", "relayer"}
    assert (body["chain"]["state"], body["database"]["state"]) == ("down", "ok")
    assert (response.status_code, body["status"]) == (503, "unavailable")


def test_unknown_path_is_json_404(client):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(client):
    response = client.get("/api/v1/batches")
    assert response.status_code == 405
    assert response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_batches_answers_503_when_the_chain_is_unreachable(client):
    response = client.post("/api/v1/batches", data=b"{}", content_type="application/json")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def test_works_need_authentication(client):
    response = client.get("/api/v1/works")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("header", ["Bearer lt_not-a-real-token", "Bearer ", "Basic abc", "Bearer " + "x" * 500])
def test_bad_tokens_are_401(client, users, header):
    response = client.get("/api/v1/works", headers={"Authorization": header})
    assert response.status_code == 401 and set(response.get_json()["error"]) == {"code", "message"}


def test_label_reads_its_works_with_a_token(client, seeded, token):
    body = client.get("/api/v1/works", headers=bearer(token)).get_json()
    assert body["total"] == 1 and body["nextPage"] is None
    [work] = body["items"]
    assert work["workId"] == 1 and work["isrc"] == "USSKG1912345" and work["iswc"] == "T-034.524.680-1"
    assert work["accrued"] == "107000" and work["split"][1] == {"payee": seeded.label, "bps": 3000}
    assert work["terms"]["METERED"]["rate_per_play"] == 1000


def test_session_authenticates_the_api_too(as_user, seeded):
    body = as_user("alice").get("/api/v1/works").get_json()
    assert [w["workId"] for w in body["items"]] == [1]


def test_pagination(client, engine, seeded, users, alice_token):
    from portal_seed import ts

    from ledger.db import session_scope
    from ledger.models import SplitShare, Work

    with session_scope(engine) as session:
        for n in range(3, 8):
            session.add(
                Work(
                    work_id=n,
                    owner=seeded.alice,
                    registrant=seeded.alice,
                    isrc=None,
                    iswc=None,
                    title=f"W{n}",
                    uri="",
                    registered_block=1,
                    registered_at=ts(2026, 10, 1),
                )
            )
            session.add(
                SplitShare(
                    block_number=500 + n,
                    log_index=0,
                    tx_hash="0x",
                    timestamp=0,
                    work_id=n,
                    position=0,
                    payee=seeded.alice,
                    bps=10000,
                )
            )
    first = client.get("/api/v1/works?per_page=4", headers=bearer(alice_token)).get_json()
    assert first["total"] == 6 and [w["workId"] for w in first["items"]] == [1, 3, 4, 5] and first["nextPage"] == 2
    second = client.get("/api/v1/works?per_page=4&page=2", headers=bearer(alice_token)).get_json()
    assert [w["workId"] for w in second["items"]] == [6, 7] and second["nextPage"] is None
    assert client.get("/api/v1/works?page=9", headers=bearer(alice_token)).get_json()["items"] == []


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "per_page=0", "per_page=101", "per_page=1.5"])
def test_bad_pagination_is_400(client, users, token, query):
    response = client.get(f"/api/v1/works?{query}", headers=bearer(token))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"


def test_one_work(client, seeded, token):
    assert client.get("/api/v1/works/1", headers=bearer(token)).get_json()["title"] == "Blue Hour"


def test_plays_by_period_and_territory_are_k_anonymous(client, seeded, token):
    body = client.get("/api/v1/works/1/plays?granularity=month", headers=bearer(token)).get_json()
    assert body["k"] == 3 and [p["bucket"] for p in body["byTime"]] == ["2026-10", "2026-11"]
    assert sum(p["plays"] for p in body["byTime"]) == seeded.plays_w1
    cells = {(c["period"], c["territory"]): c["plays"] for c in body["byTerritory"]}
    assert cells == {("2026-10", "GB"): 60, ("2026-10", "other"): 12, ("2026-11", "other"): 42}
    day = client.get("/api/v1/works/1/plays?granularity=day&period=2026-10", headers=bearer(token)).get_json()
    assert [p["bucket"] for p in day["byTime"]] == ["2026-10-01", "2026-10-03", "2026-10-04", "2026-10-05"]


@pytest.mark.parametrize("query", ["granularity=week", "period=2026-13", "from=2026-05&to=2026-01"])
def test_bad_plays_queries_are_400(client, seeded, token, query):
    response = client.get(f"/api/v1/works/1/plays?{query}", headers=bearer(token))
    assert response.status_code == 400 and "message" in response.get_json()["error"]


def test_statements_json_and_csv_match_the_ledger(client, engine, seeded, token):
    expected = statement(engine, seeded.label, Period())
    as_json = client.get("/api/v1/statements", headers=bearer(token))
    assert as_json.get_json() == json.loads(expected.to_json())
    as_csv = client.get("/api/v1/statements?format=csv&period=all", headers=bearer(token))
    assert as_csv.mimetype == "text/csv" and as_csv.data.decode() == expected.to_csv()
    assert client.get("/api/v1/statements?format=pdf", headers=bearer(token)).status_code == 400


def test_balances(client, seeded, token, alice_token):
    assert client.get("/api/v1/balances", headers=bearer(token)).get_json() == {
        "address": seeded.label,
        "credited": "19500",
        "withdrawn": "0",
        "available": "19500",
    }
    alice = client.get("/api/v1/balances", headers=bearer(alice_token)).get_json()
    assert int(alice["available"]) == seeded.net_alice - seeded.withdrawn_alice


def test_tokens_are_read_only(client, seeded, token):
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/api/v1/works", headers=bearer(token))
        assert response.status_code in (403, 405) and "error" in response.get_json()


def test_token_use_is_rate_limited(engine, seeded, token):
    client = make_app(engine, rate_token="3 per minute").test_client()
    codes = [client.get("/api/v1/balances", headers=bearer(token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/api/v1/balances", headers=bearer(token)).get_json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/works/abc",
        "/api/v1/works/99999999999999999999999",
        "/api/v1/works/1/x",
        "/api/v1/statements?period=%00",
        "/api/v1/works?page=%FF",
    ],
)
def test_odd_requests_get_json_4xx_never_html_or_500(client, seeded, token, path):
    response = client.get(path, headers=bearer(token))
    assert 400 <= response.status_code < 500 and response.mimetype == "application/json"
    assert set(response.get_json()["error"]) == {"code", "message"}


def test_openapi_json_documents_every_api_route(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {}
    for rule in client.application.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            routes[path] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert set(routes) == set(document["paths"])
    for path, methods in routes.items():
        assert methods == set(document["paths"][path]), path
    assert document == yaml.safe_load(client.get("/api/v1/openapi.yaml").data)


def test_openapi_lists_every_error_code(client):
    from ledger.ingest import ERROR_CLASSES

    document = client.get("/api/v1/openapi.json").get_json()
    codes = set(document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert {cls.code for cls in ERROR_CLASSES} <= codes
    assert {"unauthenticated", "bad_token", "read_only_token", "rate_limited", "bad_request", "not_found"} <= codes


def test_openapi_refs_resolve(client):
    document = client.get("/api/v1/openapi.json").get_json()
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node = document
        for part in ref.split("/"):
            node = node[part]
