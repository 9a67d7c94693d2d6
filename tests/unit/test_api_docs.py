"""The committed OpenAPI/AsyncAPI documents match the code."""

from __future__ import annotations

from devtools.apidocs import OUT, documents, render


def test_committed_api_documents_are_up_to_date() -> None:
    for name, doc in documents().items():
        assert (OUT / name).read_text() == render(doc), \
            f"docs/api/{name} is stale: run `python -m devtools.apidocs`"


def test_openapi_documents_every_route_and_error_shape() -> None:
    doc = documents()["openapi.json"]
    paths = set(doc["paths"])
    assert {"/orders", "/orders/{order_id}", "/orders/{order_id}/confirm",
            "/orders/{order_id}/cancel", "/payments/webhook", "/products/{product_id}",
            "/products/{product_id}/hotdeal/start", "/products/{product_id}/hotdeal/end",
            "/healthz", "/readyz"} <= paths
    assert "409" in doc["paths"]["/orders"]["post"]["responses"]
