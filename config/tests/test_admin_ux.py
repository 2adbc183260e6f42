"""The admin as an operator meets it: sections, money, totals, read-only pages, inline
labels, CSV export of a filtered list (streamed, or through storage when large).
Django test client, logged-in staff."""

import csv
import io
import re

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.urls import reverse

from payments.models import Payment
from payments.services import payment_create

pytestmark = pytest.mark.django_db
PAYMENTS = "/admin/payments/payment/"
EXPORT = "/admin/payments/payment/export/"
OPERATOR_ORDER = [
    "Payments",
    "Customers & wallets",
    "Installments",
    "Auctions",
    "Credits",
    "Webhooks",
    "Ledger",
    "Settings",
    "Stripe mirror",
]


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def payments(merchant):
    """Two USD payments and one JPY payment (zero-decimal), all 2599 or 1000 minor units."""
    return {
        "usd": payment_create(merchant=merchant, order_id="o-usd", amount=2599, currency="usd"),
        "usd2": payment_create(merchant=merchant, order_id="o-usd-2", amount=1000, currency="usd"),
        "jpy": payment_create(merchant=merchant, order_id="o-jpy", amount=2599, currency="jpy"),
    }


def rows_of(response) -> list[dict]:
    body = b"".join(response.streaming_content) if response.streaming else response.getvalue()
    return list(csv.DictReader(io.StringIO(body.decode())))


# --- The index -----------------------------------------------------------------------------------


def test_index_lists_paydesks_sections_in_operator_order_and_the_stripe_mirror_last_collapsed(staff):
    response = staff.get("/admin/")
    sections = response.context["app_list"]
    assert [s["name"] for s in sections] == OPERATOR_ORDER
    payments_section = [m["object_name"] for m in sections[0]["models"]]
    assert payments_section[:3] == ["Payment", "Charge", "Refund"]
    mirror = sections[-1]
    assert mirror["collapsed"] and all(m["model"]._meta.app_label == "djstripe" for m in mirror["models"])
    assert not any(m["model"]._meta.app_label == "djstripe" for s in sections[:-1] for m in s["models"])
    html = response.content.decode()
    # Collapsed: the mirror's models are inside a closed <details>, after every Paydesk section.
    assert re.search(r'<details class="pd-collapsed app-stripe-mirror"><summary>Stripe mirror', html)
    assert html.index("Stripe mirror") > html.index(">Settings<")
    assert "<details open" not in html


def test_every_registered_model_is_in_one_section(staff):
    from django.contrib import admin

    listed = [m["model"] for s in staff.get("/admin/").context["app_list"] for m in s["models"]]
    assert sorted(listed, key=str) == sorted(admin.site._registry, key=str)
    assert len(listed) == len(set(listed))


# --- Money in lists ----------------------------------------------------------------------------


def test_payment_list_shows_money_in_major_units_with_the_minor_units_in_the_tooltip(staff, payments):
    html = staff.get(PAYMENTS).content.decode()
    assert re.search(r'<span class="pd-money" title="2599 usd \(minor units\)">\$25\.99</span>', html)
    assert re.search(r'<span class="pd-money" title="2599 jpy \(minor units\)">¥2599</span>', html)
    assert "¥25.99" not in html


def test_money_columns_sort_by_the_amount(staff, payments):
    changelist = staff.get(PAYMENTS).context["cl"]
    column = next(i for i, c in enumerate(changelist.list_display) if getattr(c, "__name__", "") == "amount_money")
    ordered = staff.get(PAYMENTS, {"o": str(column)}).context["cl"].result_list
    assert [p.amount for p in ordered] == [1000, 2599, 2599]


def test_list_shows_totals_per_currency_of_the_filtered_rows(staff, payments, merchant):
    response = staff.get(PAYMENTS)
    totals = {row["currency"]: row for row in response.context["money_totals"]}
    assert set(totals) == {"JPY", "USD"}
    assert totals["USD"]["rows"] == 2 and "$35.99" in totals["USD"]["sums"][0]["value"]
    assert totals["JPY"]["rows"] == 1 and "¥2599" in totals["JPY"]["sums"][0]["value"]
    assert 'id="money-totals"' in response.content.decode()
    only_usd = staff.get(PAYMENTS, {"currency__exact": "usd"}).context["money_totals"]
    assert [row["currency"] for row in only_usd] == ["USD"]
    # All filtered rows, not one page's: totals ignore pagination.
    for i in range(3):
        payment_create(merchant=merchant, order_id=f"more-{i}", amount=1, currency="usd")
    from payments.admin import PaymentAdmin

    PaymentAdmin.list_per_page, per_page = 2, PaymentAdmin.list_per_page
    try:
        page = staff.get(PAYMENTS, {"currency__exact": "usd"})
    finally:
        PaymentAdmin.list_per_page = per_page
    assert len(page.context["cl"].result_list) == 2
    assert (
        page.context["money_totals"][0]["rows"] == 5 and "$36.02" in page.context["money_totals"][0]["sums"][0]["value"]
    )


def test_totals_count_each_row_once_under_a_joining_filter(staff, payments):
    from payments.services import timeline_add

    for _ in range(2):  # two flagged events on one payment: the join would double it
        timeline_add(payment=payments["usd"], type="provider.mismatch", source="provider_webhook", flagged=True)
    totals = staff.get(PAYMENTS, {"flagged": "yes"}).context["money_totals"]
    assert [(row["currency"], row["rows"]) for row in totals] == [("USD", 1)]
    assert "$25.99" in totals[0]["sums"][0]["value"]


# --- Object pages ------------------------------------------------------------------------------


def test_read_only_object_pages_have_no_save_button(staff, payments, customer):
    from installments.services import installment_order_create
    from wallets.models import Entry, Transfer
    from wallets.services import wallet_create, wallet_credit

    wallet = wallet_create(customer=customer, currency="usd")
    transfer = wallet_credit(wallet=wallet, amount=500, reason="top-up")
    order = installment_order_create(
        merchant=customer.merchant,
        customer=customer,
        amount=3000,
        currency="usd",
        installment_count=3,
        interval="month",
    )
    pages = [
        reverse("admin:payments_payment_change", args=[payments["usd"].pk]),
        reverse("admin:installments_installmentorder_change", args=[order.pk]),
        reverse("admin:wallets_transfer_change", args=[transfer.pk]),
        reverse("admin:wallets_entry_change", args=[Entry.objects.filter(transfer=transfer).first().pk]),
        reverse("admin:wallets_wallet_change", args=[wallet.pk]),
        # A checkout's id is text with an underscore: the admin's URLs quote it ("_" is "_5F").
        reverse("admin:payments_mockcheckout_change", args=[quote(payments["usd"].mock_checkout.pk)]),
    ]
    for page in pages:
        response = staff.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html, page
        assert "Close" in html, page
    assert Transfer.objects.filter(pk=transfer.pk).exists()


def test_a_link_to_an_object_whose_id_needs_quoting_opens_that_object(staff, payments):
    """The admin reads "_26" in a URL as "&": an id like "mock_26..." must go quoted."""
    from config.admin_tools import admin_url
    from payments.models import MockCheckout

    MockCheckout.objects.filter(payment=payments["usd"]).delete()
    checkout = MockCheckout.objects.create(provider_payment_id="mock_26" + "0" * 30, payment=payments["usd"])
    response = staff.get(admin_url(checkout, "change"))
    assert response.status_code == 200
    assert checkout.provider_payment_id in response.content.decode()


def test_a_post_to_a_read_only_payment_page_changes_nothing(staff, payments):
    payment = payments["usd"]
    before = Payment.objects.get(pk=payment.pk).updated_at
    response = staff.post(reverse("admin:payments_payment_change", args=[payment.pk]), {"order_id": "hijacked"})
    assert response.status_code == 403
    after = Payment.objects.get(pk=payment.pk)
    assert (after.order_id, after.updated_at) == ("o-usd", before)


def test_staff_who_may_change_payments_still_get_the_actions_but_no_save(client, django_user_model, payments):
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="payments",
            codename__in=["view_payment", "change_payment", "refund_payment", "cancel_payment", "reconcile_payment"],
        )
    )
    client.force_login(user)
    actions = [name for name, _ in client.get(PAYMENTS).context["action_form"].fields["action"].choices]
    assert {"refund_payment", "cancel_payment", "reconcile_payment"} <= set(actions)
    html = client.get(reverse("admin:payments_payment_change", args=[payments["usd"].pk])).content.decode()
    assert 'name="_save"' not in html


def test_inline_rows_read_as_labels_not_object_numbers(staff, customer):
    from installments.services import installment_order_create

    order = installment_order_create(
        merchant=customer.merchant,
        customer=customer,
        amount=3000,
        currency="usd",
        installment_count=3,
        interval="month",
    )
    html = staff.get(reverse("admin:installments_installmentorder_change", args=[order.pk])).content.decode()
    assert "object (" not in html
    assert "#1 $10.00 due" in html  # an installment row's label, in money
    assert "Timeline" in html and "Schedule" in html  # the inlines' own headings


def test_payment_page_shows_money_raw_units_badges_and_links_to_related_objects(staff, payments):
    from payments.services import payment_cancel

    payment = payment_cancel(payment=payments["usd"], source="staff")  # emits payment.canceled
    html = staff.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()
    assert "$25.99" in html and "2599 usd minor units" in html
    assert 'class="pd-badge pd-grey">Canceled<' in html
    assert f"/admin/payments/charge/?payment__id__exact={payment.pk}" in html
    assert f"/admin/payments/refund/?payment__id__exact={payment.pk}" in html
    assert "/admin/wallets/transfer/?reference__in=payment%3A" in html
    assert f"/admin/webhooks/outboundevent/?subject={payment.pk}" in html
    # The linked lists open and are filtered to this payment.
    events = staff.get("/admin/webhooks/outboundevent/", {"subject": str(payment.pk)}).context["cl"].result_list
    assert events and all(e.data["id"] == str(payment.pk) for e in events)


def test_flags_read_as_words(staff, payments):
    html = staff.get(reverse("admin:payments_payment_change", args=[payments["usd"].pk])).content.decode()
    assert "icon-no.svg" not in html  # "not flagged" is not a red cross
    html = staff.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "icon-no.svg" not in html and "icon-yes.svg" not in html


# --- CSV export ----------------------------------------------------------------------------------


def test_csv_export_of_a_filtered_list_returns_exactly_those_rows(staff, payments):
    response = staff.get(EXPORT, {"currency__exact": "usd"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="payments-')
    rows = rows_of(response)
    assert {r["id"] for r in rows} == {str(payments["usd"].pk), str(payments["usd2"].pk)}
    first = next(r for r in rows if r["order_id"] == "o-usd")
    assert (first["amount"], first["amount_decimal"], first["currency"]) == ("2599", "25.99", "usd")
    assert "client_secret" not in first  # secrets are not exported
    jpy = rows_of(staff.get(EXPORT, {"q": "o-jpy"}))
    assert [(r["order_id"], r["amount_decimal"]) for r in jpy] == [("o-jpy", "2599")]


def test_the_list_links_its_export_with_the_current_filters(staff, payments):
    html = staff.get(PAYMENTS, {"currency__exact": "jpy"}).content.decode()
    assert f'href="{EXPORT}?currency__exact=jpy"' in html


def test_csv_cells_that_a_spreadsheet_would_run_are_defused(staff, merchant):
    payment_create(merchant=merchant, order_id='=HYPERLINK("http://evil")', amount=100, currency="usd")
    (row,) = rows_of(staff.get(EXPORT))
    assert row["order_id"] == '\'=HYPERLINK("http://evil")'


def test_csv_export_needs_view_permission(client, django_user_model, payments):
    client.force_login(django_user_model.objects.create_user("nobody", password="pw", is_staff=True))
    assert client.get(EXPORT).status_code == 403


def test_a_large_export_is_written_to_storage_and_offered_as_a_download(staff, payments, settings, tmp_path):
    settings.CSV_EXPORT_STREAM_MAX_ROWS = 1
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    response = staff.get(EXPORT, {"currency__exact": "usd"})
    assert response.status_code == 302
    page = staff.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200 and 'id="download"' in html and "2 rows" in html
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv"))
    assert len(files) == 1 and files[0].startswith(f"exports/{page.wsgi_request.user.pk}/")
    assert default_storage.exists(files[0])
    download = staff.get(response["Location"], {"download": "1"})
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment")
    assert {r["id"] for r in rows_of(download)} == {str(payments["usd"].pk), str(payments["usd2"].pk)}


def test_another_staff_user_cannot_fetch_someone_elses_export(
    staff, payments, settings, tmp_path, client, django_user_model
):
    settings.CSV_EXPORT_STREAM_MAX_ROWS = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    location = staff.get(EXPORT)["Location"]
    other = django_user_model.objects.create_user("other", password="pw", is_staff=True)
    other.user_permissions.set(Permission.objects.filter(codename="view_payment"))
    staff.force_login(other)
    assert staff.get(location, {"download": "1"}).status_code == 403


def test_every_exportable_list_exports_as_many_rows_as_it_lists(staff, payments, customer):
    from django.contrib import admin

    from config.admin_export import CsvExportMixin
    from installments.services import installment_order_create
    from payments.services import payment_cancel
    from wallets.services import wallet_create, wallet_credit

    wallet_credit(wallet=wallet_create(customer=customer, currency="jpy"), amount=2599, reason="top-up")
    payment_cancel(payment=payments["jpy"], source="staff")
    installment_order_create(
        merchant=customer.merchant, customer=customer, amount=3000, currency="usd", installment_count=3, interval="week"
    )
    exportable = [(m, a) for m, a in admin.site._registry.items() if isinstance(a, CsvExportMixin)]
    labels = {m._meta.label for m, _ in exportable}
    wanted = {"payments.Payment", "payments.Charge", "payments.Refund", "wallets.Entry", "installments.Installment"}
    assert wanted | {"webhooks.Delivery"} <= labels
    for model, _ in exportable:
        info = model._meta.app_label, model._meta.model_name
        listed = staff.get(reverse("admin:{}_{}_changelist".format(*info))).context["cl"].result_count
        response = staff.get(reverse("admin:{}_{}_export".format(*info)))
        assert response.status_code == 200, info
        assert len(rows_of(response)) == listed, info
        if model._meta.label in wanted - {"payments.Charge", "payments.Refund"}:
            assert listed > 0, info  # the export is tested on rows, not only on a header


def test_a_streamed_export_reads_in_chunks_so_memory_stays_flat(staff, merchant):
    """12,000 rows: the export's peak memory stays well below what loading the rows takes
    (a list() of them would need at least as much: it is what the export replaces)."""
    import tracemalloc

    Payment.objects.bulk_create(
        Payment(merchant=merchant, order_id=f"bulk-{i}", amount=100 + i, currency="usd", provider="mock")
        for i in range(12_000)
    )
    tracemalloc.start()
    try:
        response = staff.get(EXPORT)
        assert response.streaming
        lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded = list(Payment.objects.select_related("merchant", "customer"))
        _, loaded_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 12_001 and len(loaded) == 12_000
    assert streamed_peak < loaded_peak / 2, (streamed_peak, loaded_peak)
