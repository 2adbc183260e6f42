import pytest

pytestmark = pytest.mark.django_db


def test_create_get_and_duplicate_external_id(merchant_api, merchant):
    response = merchant_api.post(
        "/api/v1/customers", {"external_id": "u-1", "email": "a@example.com", "name": "Ada"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["external_id"] == "u-1" and body["merchant"] == str(merchant.pk)
    assert merchant_api.get(f"/api/v1/customers/{body['id']}").json()["email"] == "a@example.com"
    duplicate = merchant_api.post("/api/v1/customers", {"external_id": "u-1"}, format="json")
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["param"] == "external_id"


def test_bad_email_names_param(merchant_api):
    response = merchant_api.post("/api/v1/customers", {"external_id": "u", "email": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "email"


def test_list_is_paginated_and_filterable(merchant_api):
    for i in range(25):
        merchant_api.post("/api/v1/customers", {"external_id": f"u-{i}"}, format="json")
    page = merchant_api.get("/api/v1/customers?limit=10&page=2").json()
    assert page["count"] == 25 and len(page["results"]) == 10
    assert page["next"] and page["previous"]
    assert merchant_api.get("/api/v1/customers?limit=1000").json()["results"].__len__() == 25  # capped at 100
    filtered = merchant_api.get("/api/v1/customers?external_id=u-3").json()
    assert [c["external_id"] for c in filtered["results"]] == ["u-3"]
    out_of_range = merchant_api.get("/api/v1/customers?page=99")
    assert out_of_range.status_code == 404 and out_of_range.json()["error"]["type"] == "not_found"


def test_ping_needs_no_auth(api):
    assert api.get("/api/v1/payments/ping").json() == {"ok": True}
