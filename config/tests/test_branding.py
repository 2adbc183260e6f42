import pytest

pytestmark = pytest.mark.django_db


def test_admin_is_branded_paydesk(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "Paydesk" in page and "/api/docs/" in page


def test_browsable_api_is_branded_for_staff(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/customers", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert "Paydesk API" in response.content.decode()


def test_every_admin_changelist_and_add_page_loads(client, admin_user):
    """An operator can open every admin list (and every add form staff may use)."""
    from django.contrib import admin
    from django.urls import reverse

    client.force_login(admin_user)
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        response = client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert response.status_code == 200, (info, response.status_code)
        if model_admin.has_add_permission(type("R", (), {"user": admin_user})()):
            assert client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 200, info


def assert_json_error(response, status):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert set(response.json()["error"]) == {"type", "code", "message", "param"}


@pytest.mark.parametrize(
    "path,extra",
    [
        ("/api/v1/customers", {"HTTP_ACCEPT": "text/html"}),
        ("/api/v1/customers?format=api", {}),
        ("/api/v1/customers", {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}),
    ],
    ids=["accept-html", "format-api", "browser-accept"],
)
def test_anonymous_browser_gets_a_json_401_not_an_html_page(client, path, extra):
    assert_json_error(client.get(path, **extra), 401)


def test_anonymous_html_request_for_an_open_endpoint_gets_json(client):
    response = client.get("/api/v1/payments/ping?format=api", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_api_key_with_accept_html_gets_json(merchant_api):
    ok = merchant_api.get("/api/v1/customers", HTTP_ACCEPT="text/html")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("application/json")
    missing = merchant_api.get("/api/v1/customers/00000000-0000-0000-0000-000000000000?format=api")
    assert_json_error(missing, 404)


def test_logged_in_non_staff_user_gets_json(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("shopper", password="x"))
    assert_json_error(client.get("/api/v1/customers", HTTP_ACCEPT="text/html"), 401)
    assert_json_error(client.get("/api/v1/customers?format=api"), 401)


def test_staff_still_gets_the_browsable_api_error_pages(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/customers/00000000-0000-0000-0000-000000000000", HTTP_ACCEPT="text/html")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
