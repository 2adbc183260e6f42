"""/ is a landing page, and the admin's "View site" link goes there (it was a debug 404)."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_root_is_a_landing_page_with_links_to_admin_docs_and_health(client):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    for href in ('href="/admin/"', 'href="/api/docs/"', 'href="/healthz"'):
        assert href in html


def test_the_admins_view_site_link_goes_to_the_landing_page(client, admin_user):
    client.force_login(admin_user)
    html = client.get("/admin/").content.decode()
    assert re.search(r'<a href="/">View site</a>', html)
