"""/ : a small landing page for whoever opens the server (and the admin's "View site")."""

from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def landing(request):
    return render(request, "landing.html")
