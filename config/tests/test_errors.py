import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.urls("config.tests.urls")]


def assert_error(response, status, type_, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == (code or type_)
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "kind,status,type_,code",
    [
        ("insufficient_funds", 402, "payment_error", "insufficient_funds"),
        ("insufficient_credits", 402, "payment_error", "insufficient_credits"),
        ("quota_exceeded", 402, "payment_error", "quota_exceeded"),
        ("conflict", 409, "conflict", None),
        ("illegal_transition", 409, "conflict", None),
        ("not_found", 404, "not_found", None),
        ("permission", 403, "permission_error", None),
        ("provider", 502, "provider_error", None),
        ("unavailable", 503, "service_unavailable", None),
    ],
)
def test_domain_errors_map_to_api_statuses(api, kind, status, type_, code):
    assert_error(api.get(f"/api/v1/_test/raise/{kind}"), status, type_, code)


def test_unexpected_exception_is_500_in_shape_without_traceback(api, caplog):
    response = api.get("/api/v1/_test/raise/boom")
    error = assert_error(response, 500, "api_error")
    assert "Traceback" not in response.content.decode()
    assert "pd_test_" not in response.content.decode()
    assert response["X-Request-Id"] in error["message"]


def test_validation_error_names_param(api):
    error = assert_error(
        api.post("/api/v1/_test/money", {"currency": "usd"}, format="json"), 400, "invalid_request_error"
    )
    assert error["param"] == "amount"


def test_malformed_json_is_400(api):
    response = api.post("/api/v1/_test/money", data='{"amount": 10,', content_type="application/json")
    assert_error(response, 400, "invalid_request_error")


def test_non_object_body_is_400(api):
    response = api.post("/api/v1/_test/money", data="[1, 2]", content_type="application/json")
    assert_error(response, 400, "invalid_request_error")


def test_unauthenticated_is_401(api):
    assert_error(api.get("/api/v1/customers"), 401, "authentication_error")


def test_unknown_api_url_is_json_404(api):
    assert_error(api.get("/api/v1/no-such-thing"), 404, "not_found")


def test_malformed_id_is_404(merchant_api):
    assert_error(merchant_api.get("/api/v1/customers/not-a-uuid"), 404, "not_found")


def test_wrong_method_is_405(merchant_api):
    assert_error(merchant_api.delete("/api/v1/customers"), 405, "invalid_request_error")


def test_unsupported_media_type_is_415(merchant_api):
    response = merchant_api.post("/api/v1/customers", data="external_id=x", content_type="text/plain")
    assert_error(response, 415, "invalid_request_error")


def test_every_response_has_a_request_id(api):
    response = api.get("/api/v1/payments/ping", HTTP_X_REQUEST_ID="abc-123")
    assert response.json() == {"ok": True}
    assert response["X-Request-Id"] == "abc-123"
    generated = api.get("/api/v1/payments/ping", HTTP_X_REQUEST_ID="bad id <script>")["X-Request-Id"]
    assert generated != "bad id <script>" and len(generated) == 32


@pytest.mark.parametrize(
    "metadata,param",
    [
        ({"note": "a\x00b"}, "metadata.note"),
        ({"k\x00": "v"}, "metadata.k\\u0000"),
        ({"l": [1, "\x00"]}, "metadata.l[1]"),
    ],
    ids=["value", "key", "list"],
)
def test_nul_character_in_a_json_body_is_400_not_a_database_error(merchant_api, metadata, param):
    body = {"order_id": "o-nul", "amount": 1000, "currency": "usd", "metadata": metadata}
    error = assert_error(merchant_api.post("/api/v1/payments", body, format="json"), 400, "invalid_request_error")
    assert error["param"] == param


def test_form_and_multipart_bodies_still_parse(merchant_api):
    """The browsable API posts forms: those parsers stay."""
    assert merchant_api.post("/api/v1/customers", {"external_id": "multipart"}).status_code == 201
    form = merchant_api.post("/api/v1/customers", "external_id=form", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 201


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method,path", [("get", "/api/v1/customers"), ("post", "/api/v1/payments")])
def test_database_unreachable_is_503_in_shape_without_detail(merchant_key, method, path):
    """The database really down (its port closed), not a mock: 503 service_unavailable,
    retryable, and nothing of the connection error reaches the client."""
    import socket

    from django.db import connection
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant_key}")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = dead_port
    try:
        response = getattr(client, method)(path, {}, format="json")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved
    error = assert_error(response, 503, "service_unavailable")
    assert response["Retry-After"] == "1"
    assert str(dead_port) not in error["message"] and "connection" not in error["message"].lower()


@pytest.mark.parametrize("field", ["rows", "items"])
def test_an_error_inside_a_list_names_its_index_in_one_style(api, field):
    """A list of nested serializers and a ListField report the same path shape."""
    response = api.post("/api/v1/_test/nested", {field: [{"amount": 5}, {"amount": 1.5}]}, format="json")
    assert assert_error(response, 400, "invalid_request_error")["param"] == f"{field}[1].amount"
