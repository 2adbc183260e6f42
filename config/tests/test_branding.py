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
