import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query,param",
    [
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=1.5", "page"),
        ("page=99999999999999999999", "page"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=1e2", "limit"),
    ],
)
def test_a_page_or_limit_that_is_not_a_positive_integer_is_400_naming_it(merchant_api, query, param):
    response = merchant_api.get(f"/api/v1/customers?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


def test_good_pages_and_limits_still_work(merchant_api):
    for i in range(3):
        merchant_api.post("/api/v1/customers", {"external_id": f"u-{i}"}, format="json")
    assert len(merchant_api.get("/api/v1/customers?page=2&limit=2").json()["results"]) == 1
    assert len(merchant_api.get("/api/v1/customers?page=last&limit=2").json()["results"]) == 1
    assert len(merchant_api.get("/api/v1/customers?limit=500").json()["results"]) == 3  # capped, not refused
