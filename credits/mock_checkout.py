"""The mock provider's checkout page for credit packs. "Pay" sends a Stripe-shaped,
signed checkout.session.completed through the Stripe receive path; the page itself
grants nothing, and neither does the redirect to success_url afterwards."""

from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from config.errors import DomainError

from .checkout import mock_checkout_complete
from .models import Checkout


@require_http_methods(["GET", "POST"])
def credits_mock_checkout(request, checkout_id):
    checkout = (
        Checkout.objects.select_related("pack", "customer", "merchant").filter(pk=checkout_id, provider="mock").first()
    )
    if checkout is None:
        raise Http404("No such mock checkout.")
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
