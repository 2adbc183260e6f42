"""Operator actions on payments: a confirmation page, then the service, an audit entry,
and only for staff whose group may move money."""

import pytest
from django.contrib.admin.models import CHANGE
from django.urls import reverse

from config.tests.operator_actions_support import action_names, audit_of, operator_url
from payments.models import MockCheckout, Payment, PaymentEvent, Refund
from payments.services import payment_create, payment_settle_from_provider
from wallets.models import Transfer
from wallets.selectors import ledger_audit

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/payments/payment/"


def succeeded_payment(merchant, amount=1000, order_id="o-1"):
    payment = payment_create(merchant=merchant, order_id=order_id, amount=amount, currency="usd")
    payment_settle_from_provider(
        payment_id=payment.pk, outcome="succeeded", amount=amount, currency="usd", source="provider_webhook", data={}
    )
    payment.refresh_from_db()
    return payment


def refund_transfers(payment) -> int:
    return Transfer.objects.filter(reference__startswith="refund:").count()


class TestRefund:
    def test_the_confirmation_page_shows_the_payment_and_asks_amount_and_reason(self, operators, merchant):
        payment = succeeded_payment(merchant)
        page = operators.finance.open(Payment, "refund_payment", [payment])
        assert page.status_code == 200
        html = page.content.decode()
        assert "Refund up to $10.00" in html and payment.order_id in html
        assert "Amount to refund, in minor units of USD (100 = $1.00)" in html
        assert "everything left: $10.00 (1000)" in html
        assert 'name="reason"' in html and "Yes, refund" in html
        assert Payment.objects.get(pk=payment.pk).status == "succeeded"  # showing it changed nothing

    def test_the_menu_entry_opens_the_confirmation_page(self, operators, merchant):
        payment = succeeded_payment(merchant)
        response = operators.finance.client.post(
            CHANGELIST, {"action": "refund_payment", "_selected_action": [str(payment.pk)]}
        )
        assert response.status_code == 302
        assert response["Location"] == operator_url(Payment, "refund_payment", [payment])

    def test_partial_then_full_refund_through_the_service_with_an_audit_entry(self, operators, merchant):
        payment = succeeded_payment(merchant)
        finance = operators.finance

        done = finance.confirm(Payment, "refund_payment", [payment], amount=300, reason="damaged in transit")
        assert done.status_code == 302
        assert done["Location"] == reverse("admin:payments_payment_change", args=[payment.pk])
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("partially_refunded", 300)
        refund = Refund.objects.get()
        assert (refund.amount, refund.status, refund.reason) == (300, "succeeded", "damaged in transit")
        assert payment.timeline.filter(type="refund.requested", source=PaymentEvent.Source.STAFF).exists()
        assert refund_transfers(payment) == 1

        (entry,) = audit_of(payment)
        assert entry["user"] == finance.user and entry["flag"] == CHANGE
        assert entry["operator_action"] == "refund_payment" and entry["reason"] == "damaged in transit"
        assert entry["details"]["amount"] == 300 and entry["details"]["refund"] == str(refund.pk)
        assert "Refunded $3.00" in entry["result"]

        rest = finance.confirm(Payment, "refund_payment", [payment], amount="", reason="customer gave up")
        assert rest.status_code == 302
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("refunded", 1000)
        assert [e["details"]["amount"] for e in audit_of(payment)] == [700, 300]
        report = ledger_audit()
        assert report["ok"], report

    def test_the_audit_entry_is_on_the_history_and_object_pages(self, operators, merchant):
        payment = succeeded_payment(merchant)
        operators.finance.confirm(Payment, "refund_payment", [payment], amount=250, reason="goodwill")
        for url in (
            reverse("admin:payments_payment_history", args=[payment.pk]),
            reverse("admin:payments_payment_change", args=[payment.pk]),
        ):
            html = operators.support.client.get(url).content.decode()
            assert "Refund" in html and "goodwill" in html and "Refunded $2.50" in html, url
            assert "ops-finance" in html

    @pytest.mark.parametrize(
        ("fields", "field", "message"),
        [
            ({"amount": 701, "reason": "too much"}, "amount", "more than is left"),
            ({"amount": 0, "reason": "zero"}, "amount", "greater than or equal to 1"),
            ({"amount": "1.50", "reason": "decimal"}, "amount", "whole number"),
            ({"amount": 100, "reason": "   "}, "reason", "required"),
        ],
    )
    def test_bad_input_is_a_form_error_and_changes_nothing(self, operators, merchant, fields, field, message):
        payment = succeeded_payment(merchant)
        operators.finance.confirm(Payment, "refund_payment", [payment], amount=300, reason="first")
        transfers = Transfer.objects.count()

        page = operators.finance.confirm(Payment, "refund_payment", [payment], **fields)

        assert page.status_code == 200
        assert message in " ".join(page.context["form"].errors[field])
        assert b"Nothing was changed" in page.content
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("partially_refunded", 300)
        assert Refund.objects.count() == 1 and Transfer.objects.count() == transfers
        assert len(audit_of(payment)) == 1

    def test_what_is_left_is_checked_again_when_confirming(self, operators, merchant):
        """The page was opened when 1000 was left; by the confirm only 200 is."""
        payment = succeeded_payment(merchant)
        finance = operators.finance
        page = finance.open(Payment, "refund_payment", [payment])
        token = page.context["form"]["token"].value()
        finance.confirm(Payment, "refund_payment", [payment], amount=800, reason="first")

        late = finance.client.post(
            operator_url(Payment, "refund_payment", [payment]), {"token": str(token), "amount": 500, "reason": "late"}
        )

        assert late.status_code == 200 and late.context["form"].errors["amount"]
        assert Payment.objects.get(pk=payment.pk).amount_refunded == 800

    def test_a_double_submit_refunds_once(self, operators, merchant):
        payment = succeeded_payment(merchant)
        finance = operators.finance
        page = finance.open(Payment, "refund_payment", [payment])
        form = {"token": str(page.context["form"]["token"].value()), "amount": 100, "reason": "once"}
        url = operator_url(Payment, "refund_payment", [payment])

        first = finance.client.post(url, form, follow=True)
        second = finance.client.post(url, form, follow=True)

        assert Payment.objects.get(pk=payment.pk).amount_refunded == 100
        assert Refund.objects.count() == 1 and len(audit_of(payment)) == 1
        assert b"Refunded $1.00" in first.content
        assert b"Already done from this page; nothing changed." in second.content

    def test_several_payments_are_each_refunded_in_full_and_others_skipped(self, operators, merchant):
        one, two = succeeded_payment(merchant, order_id="o-1"), succeeded_payment(merchant, 500, order_id="o-2")
        pending = payment_create(merchant=merchant, order_id="o-3", amount=100, currency="usd")
        page = operators.finance.open(Payment, "refund_payment", [one, two, pending])
        assert "amount" not in page.context["form"].fields
        assert b"Skipped: a pending payment cannot be refunded" in page.content

        operators.finance.confirm(Payment, "refund_payment", [one, two, pending], reason="recall")

        statuses = {p.order_id: (p.status, p.amount_refunded) for p in Payment.objects.all()}
        assert statuses == {"o-1": ("refunded", 1000), "o-2": ("refunded", 500), "o-3": ("pending", 0)}
        assert len(audit_of(one)) == len(audit_of(two)) == 1 and not audit_of(pending)


class TestSupportCannotMoveMoney:
    def test_no_action_no_button_and_a_forged_post_is_refused(self, operators, merchant):
        payment = succeeded_payment(merchant)
        pending = payment_create(merchant=merchant, order_id="o-2", amount=1000, currency="usd")
        support = operators.support

        listing = support.client.get(CHANGELIST)
        assert listing.status_code == 200
        assert not {"refund_payment", "cancel_payment", "reconcile_payment"} & set(action_names(listing))
        change = support.client.get(reverse("admin:payments_payment_change", args=[payment.pk]))
        assert change.status_code == 200 and b"Refund\xe2\x80\xa6" not in change.content

        refused = support.open(Payment, "refund_payment", [payment])
        assert refused.status_code == 403 and b"payments.refund_payment" in refused.content
        assert support.forge(Payment, "refund_payment", [payment], amount=100, reason="x").status_code == 403
        assert support.forge(Payment, "cancel_payment", [pending], reason="x").status_code == 403
        forged_menu = support.client.post(
            CHANGELIST, {"action": "refund_payment", "_selected_action": [str(payment.pk)]}
        )
        assert forged_menu.status_code == 403

        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("succeeded", 0)
        assert Payment.objects.get(pk=pending.pk).status == "pending"
        assert not Refund.objects.exists() and not audit_of(payment) and not audit_of(pending)

    def test_finance_and_superusers_see_the_actions(self, operators, merchant):
        succeeded_payment(merchant)
        for operator in (operators.finance, operators.admin):
            names = action_names(operator.client.get(CHANGELIST))
            assert {"refund_payment", "cancel_payment", "reconcile_payment"} <= set(names)


def test_cancel_a_pending_payment_needs_a_reason_and_is_audited(operators, merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    finance = operators.finance
    page = finance.open(Payment, "cancel_payment", [payment])
    assert page.status_code == 200 and b"Cancel it, and tell the provider." in page.content

    refused = finance.confirm(Payment, "cancel_payment", [payment], reason="")
    assert refused.status_code == 200 and refused.context["form"].errors["reason"]
    assert Payment.objects.get(pk=payment.pk).status == "pending"

    done = finance.confirm(Payment, "cancel_payment", [payment], reason="duplicate order")
    assert done.status_code == 302
    assert Payment.objects.get(pk=payment.pk).status == "canceled"
    (entry,) = audit_of(payment)
    assert entry["operator_action"] == "cancel_payment"
    assert (entry["reason"], entry["user"]) == ("duplicate order", finance.user)


def test_a_payment_that_is_no_longer_pending_is_refused_on_the_form(operators, merchant):
    """State moved between the page and the confirm: the service refuses, nothing changes."""
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    finance = operators.finance
    page = finance.open(Payment, "cancel_payment", [payment])
    token = page.context["form"]["token"].value()
    payment_settle_from_provider(
        payment_id=payment.pk, outcome="succeeded", amount=1000, currency="usd", source="provider_webhook", data={}
    )
    response = finance.client.post(
        operator_url(Payment, "cancel_payment", [payment]), {"token": str(token), "reason": "late"}
    )
    assert response.status_code == 200  # the page again: it applies to nothing now
    assert b"nothing to do" in response.content
    assert Payment.objects.get(pk=payment.pk).status == "succeeded" and not audit_of(payment)


def test_reconcile_now_asks_about_the_selected_payments_whatever_their_age(operators, merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    other = payment_create(merchant=merchant, order_id="o-2", amount=1000, currency="usd")
    MockCheckout.objects.update(status="paid")  # both paid, neither webhook came

    no_reason = operators.finance.confirm(Payment, "reconcile_payment", [payment], reason="")
    assert no_reason.status_code == 200 and Payment.objects.get(pk=payment.pk).status == "pending"

    done = operators.finance.confirm(Payment, "reconcile_payment", [payment], reason="customer says they paid")

    assert done.status_code == 302
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert Payment.objects.get(pk=other.pk).status == "pending"
    (entry,) = audit_of(payment)
    assert entry["details"]["result"] == "succeeded" and entry["user"] == operators.finance.user
