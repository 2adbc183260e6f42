"""django.contrib.messages with its storage built on first use (config.middleware.LazyMessageMiddleware)."""

import pytest
from django.contrib import messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from config.middleware import LazyMessageMiddleware

pytestmark = pytest.mark.django_db


def _request(session):
    request = RequestFactory().get("/admin/")
    request.session = session
    request.COOKIES = {}
    return request


def test_a_request_that_never_uses_messages_builds_no_storage_and_leaves_the_response_alone(client):
    middleware = LazyMessageMiddleware(lambda request: HttpResponse("ok"))
    request = _request(client.session)
    response = middleware(request)
    assert request.__dict__["_messages"]._wrapped is empty
    assert "messages" not in response.cookies


def test_a_message_added_in_one_request_is_shown_in_the_next(client):
    session = client.session

    def add(request):
        messages.success(request, "Refund queued.")
        return HttpResponse("ok")

    first = _request(session)
    response = LazyMessageMiddleware(add)(first)
    assert isinstance(first._messages, FallbackStorage)
    second = _request(session)
    second.COOKIES = {key: morsel.value for key, morsel in response.cookies.items()}
    shown = []

    def show(request):
        shown.extend(str(m) for m in messages.get_messages(request))
        return HttpResponse("ok")

    LazyMessageMiddleware(show)(second)
    assert shown == ["Refund queued."]
