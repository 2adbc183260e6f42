"""Operator actions on installment orders: retry failed installments now, cancel, postpone."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.urls import reverse

from config.tests.operator_actions_support import action_names, audit_of
from installments.models import InstallmentOrder
from installments.services import installment_order_create, installments_collect
from payments.providers.mock import DECLINING_METHOD

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/installments/installmentorder/"
ACTIONS = {"retry_installments", "cancel_installment_order", "reschedule_installments"}


def make_order(merchant, customer, *, count=3, amount=900):
    return installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=amount,
        currency="usd",
        installment_count=count,
        interval="month",
        start_date=date(2027, 1, 10),
    )


@pytest.fixture
def failing_order(merchant, customer):
    """An active order whose first installment failed (the card declined) and waits for dunning."""
    customer.payment_method = DECLINING_METHOD
    customer.save()
    order = make_order(merchant, customer)
    assert list(installments_collect(now=datetime(2027, 1, 10, 12, tzinfo=UTC))) == [{"failed": 1}]
    return order


def test_retry_now_makes_failed_installments_due_and_is_audited(operators, failing_order):
    first = failing_order.installments.get(sequence=1)
    assert first.next_attempt_at > datetime(2027, 1, 10, 12, tzinfo=UTC)
    page = operators.finance.open(InstallmentOrder, "retry_installments", [failing_order])
    assert page.status_code == 200 and b"Retry now: #1 $3.00 due 2027-01-10" in page.content

    done = operators.finance.confirm(InstallmentOrder, "retry_installments", [failing_order], reason="card updated")

    assert done.status_code == 302
    first.refresh_from_db()
    assert first.status == "failed" and first.next_attempt_at < datetime.now(UTC) + timedelta(seconds=5)
    assert failing_order.timeline.filter(type="installment.retry_requested", source="staff").count() == 1
    (entry,) = audit_of(failing_order)
    assert (entry["operator_action"], entry["reason"], entry["user"]) == (
        "retry_installments",
        "card updated",
        operators.finance.user,
    )


def test_retry_now_skips_an_order_with_nothing_failed(operators, merchant, customer):
    order = make_order(merchant, customer)
    page = operators.finance.open(InstallmentOrder, "retry_installments", [order])
    assert b"Skipped: no installment of it has failed." in page.content and b"nothing to do" in page.content
    operators.finance.forge(InstallmentOrder, "retry_installments", [order], reason="x")
    assert not order.timeline.filter(type="installment.retry_requested").exists() and not audit_of(order)


def test_cancel_an_order_through_the_service(operators, merchant, customer):
    order = make_order(merchant, customer)
    page = operators.finance.open(InstallmentOrder, "cancel_installment_order", [order])
    assert b"Cancel 3 open installments ($9.00); 0 paid stay paid." in page.content

    empty = operators.finance.confirm(InstallmentOrder, "cancel_installment_order", [order], reason="")
    assert empty.status_code == 200 and empty.context["form"].errors["reason"]
    assert InstallmentOrder.objects.get(pk=order.pk).status == "active"

    operators.finance.confirm(InstallmentOrder, "cancel_installment_order", [order], reason="customer request")
    order.refresh_from_db()
    assert order.status == "canceled"
    assert set(order.installments.values_list("status", flat=True)) == {"canceled"}
    assert audit_of(order)[0]["reason"] == "customer request"


def test_postpone_moves_open_installments(operators, merchant, customer):
    order = make_order(merchant, customer, count=2, amount=500)
    bad = operators.finance.confirm(InstallmentOrder, "reschedule_installments", [order], days=0, reason="x")
    assert bad.status_code == 200 and bad.context["form"].errors["days"]

    operators.finance.confirm(InstallmentOrder, "reschedule_installments", [order], days=7, reason="hardship")

    assert list(order.installments.order_by("sequence").values_list("due_date", flat=True)) == [
        date(2027, 1, 17),
        date(2027, 2, 17),
    ]
    assert audit_of(order)[0]["details"]["days"] == 7


def test_support_gets_no_action_and_a_forged_post_changes_nothing(operators, failing_order):
    support = operators.support
    listing = support.client.get(CHANGELIST)
    assert listing.status_code == 200 and not ACTIONS & set(action_names(listing))
    assert ACTIONS <= set(action_names(operators.finance.client.get(CHANGELIST)))
    change = support.client.get(reverse("admin:installments_installmentorder_change", args=[failing_order.pk]))
    assert change.status_code == 200 and b"Cancel order" not in change.content

    assert support.forge(InstallmentOrder, "cancel_installment_order", [failing_order], reason="x").status_code == 403
    assert support.forge(InstallmentOrder, "retry_installments", [failing_order], reason="x").status_code == 403
    forged = support.client.post(
        CHANGELIST, {"action": "cancel_installment_order", "_selected_action": [str(failing_order.pk)]}
    )
    assert forged.status_code == 403

    failing_order.refresh_from_db()
    assert failing_order.status == "active" and not audit_of(failing_order)
    assert not failing_order.timeline.filter(type="installment.retry_requested").exists()
