"""The JSON API's error shape and the ingest route, without a chain (the e2e tests cover the
route against Anvil through the same ledger.ingest.handle_json)."""
import pytest

from webapp import create_app


@pytest.fixture
def client():
    from ledger.config import Settings

    settings = Settings.from_env().with_(rpc_url="http://127.0.0.1:9")
    app = create_app({"TESTING": True, "LEDGER_SETTINGS": settings})
    return app.test_client()


def test_health_ok(client):
    assert client.get("/api/v1/health").get_json() == {"status": "ok"}


def test_unknown_path_is_json_404(client):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(client):
    response = client.get("/api/v1/batches")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_batches_answers_503_when_the_chain_is_unreachable(client):
    response = client.post("/api/v1/batches", data=b"{}", content_type="application/json")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def test_openapi_documents_every_api_route(client):
    import yaml

    document = yaml.safe_load(client.get("/api/v1/openapi.yaml").data)
    routes = {rule.rule.removeprefix("/api/v1") for rule in client.application.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") and not rule.rule.endswith("openapi.yaml")}
    assert routes == set(document["paths"])


def test_openapi_lists_every_ingest_error_code(client):
    import yaml

    from ledger.ingest import ERROR_CLASSES

    document = yaml.safe_load(client.get("/api/v1/openapi.yaml").data)
    codes = set(document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert {cls.code for cls in ERROR_CLASSES} <= codes
