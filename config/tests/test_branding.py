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
