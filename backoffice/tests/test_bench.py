"""The admin-dashboard bench scenario runs end to end and checks its own answer."""

import pytest

from backoffice import bench, selectors
from payments.models import Payment, Refund

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_it_seeds_set_based_measures_every_range_and_reuses_the_seed(monkeypatch, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    monkeypatch.setattr(bench, "RUNS", 1)
    notes = []
    results = bench.admin_dashboard(n=500, out=notes.append)
    assert Payment.objects.filter(merchant__name="bench-admin-dashboard-500").count() == 500
    assert Refund.objects.filter(payment__merchant__name="bench-admin-dashboard-500").exists()
    assert set(Payment.objects.values_list("status", flat=True)) >= {"succeeded", "refunded", "failed", "expired"}
    assert [(r["scope"], r["range"]) for r in results] == [
        (scope, period) for scope in ("all merchants", "one merchant") for period in selectors.PERIODS
    ]
    assert all(0 < r["queries"] <= 25 and r["p50_ms"] > 0 for r in results)
    assert not results[0]["reused_seed"]
    again = bench.admin_dashboard(n=500, out=notes.append)
    assert again[0]["reused_seed"] and Payment.objects.count() == 500
