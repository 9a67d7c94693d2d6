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


def test_every_operation_is_named_and_tagged_for_generated_clients() -> None:
    """openapi-python-client makes `api/<tag>/<operationId>.py`: `orders.place_order`, not
    `default.place_order_orders_post`."""
    doc = documents()["openapi.json"]
    tags = {t["name"] for t in doc["tags"]}
    ops = {(method, path): op for path, item in doc["paths"].items()
           for method, op in item.items()}
    assert ops[("post", "/orders")]["operationId"] == "place_order"
    assert ops[("post", "/orders")]["tags"] == ["orders"]
    assert ops[("get", "/orders/{order_id}")]["operationId"] == "get_order"
    for (method, path), op in ops.items():
        assert op["operationId"].isidentifier() and "_" + method not in op["operationId"], \
            (method, path)
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, (method, path)
    assert len({op["operationId"] for op in ops.values()}) == len(ops)
