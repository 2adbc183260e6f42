"""Staff actions on payments go through services, and only for staff allowed to change payments."""

import pytest
from django.contrib.auth.models import Permission

from payments.models import MockCheckout, Payment
from payments.services import payment_create

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/payments/payment/"


@pytest.fixture
def staff(django_user_model):
    def make(*codenames):
        user = django_user_model.objects.create_user(f"staff-{len(codenames)}", password="pw", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="payments", codename__in=codenames))
        return user

    return make


def test_view_only_staff_cannot_refund_or_cancel(client, staff, merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    client.force_login(staff("view_payment"))
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is left for this user
    actions = [name for name, _ in form.fields["action"].choices] if form else []
    assert "refund_in_full" not in actions and "cancel" not in actions
    client.post(CHANGELIST, {"action": "cancel", "_selected_action": [str(payment.pk)]})
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_reconcile_now_asks_about_the_selected_payments_whatever_their_age(client, staff, merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    other = payment_create(merchant=merchant, order_id="o-2", amount=1000, currency="usd")
    MockCheckout.objects.update(status="paid")  # both paid, neither webhook came
    client.force_login(staff("view_payment", "change_payment"))
    client.post(CHANGELIST, {"action": "reconcile_now", "_selected_action": [str(payment.pk)]})
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert Payment.objects.get(pk=other.pk).status == "pending"
