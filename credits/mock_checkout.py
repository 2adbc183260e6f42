"""The mock provider's checkout page for credit packs. "Pay" sends a Stripe-shaped,
signed checkout.session.completed through the Stripe receive path; the page itself
grants nothing, and neither does the redirect to success_url afterwards."""

from django.conf import settings
from django.http import HttpResponseNotFound, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from config.errors import DomainError

from .checkout import mock_checkout_complete
from .models import Checkout


def _not_found() -> HttpResponseNotFound:
    # Answered, not raised: under /api/ an Http404 escaping a plain view is shaped as a 500
    # (config.middleware), a 404 response as API.md's not_found.
    return HttpResponseNotFound("No such mock checkout.")


@require_http_methods(["GET", "POST"])
def credits_mock_checkout(request, checkout_id):
    if not settings.MOCK_PROVIDER_ENABLED:  # anyone could take credits from it: a 404, GET and POST
        return _not_found()
    checkout = (
        Checkout.objects.select_related("pack", "customer", "merchant").filter(pk=checkout_id, provider="mock").first()
    )
    if checkout is None:
        return _not_found()
    error = None
    if request.method == "POST":
        if request.POST.get("action") == "cancel":
            return HttpResponseRedirect(checkout.cancel_url)
        try:
            mock_checkout_complete(checkout=checkout)
        except DomainError as exc:
            error = f"The event was refused: {exc.message}"
        else:
            return HttpResponseRedirect(checkout.success_url)
    return render(
        request, "credits/mock_checkout.html", {"checkout": checkout, "error": error}, status=400 if error else 200
    )
