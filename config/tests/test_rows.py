"""config.rows.select answers what the same QuerySet answers, on PostgreSQL and SQLite."""

import uuid

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError

from config import rows
from payments.tests.factories import CustomerFactory
from wallets.models import Account
from wallets.services import merchant_balance_account, wallet_create


@pytest.fixture
def wallets(merchant):
    made = [wallet_create(customer=CustomerFactory(merchant=merchant), currency=c) for c in ("usd", "eur", "usd")]
    return made


def _ids(accounts):
    return [a.pk for a in accounts]


def test_equalities_in_and_null_match_as_the_orm_does(merchant, wallets):
    first = wallets[0]
    found = rows.select(Account, [{"kind": "customer_wallet", "customer_id": first.customer_id, "currency": "usd"}])
    assert _ids(found) == [first.pk]
    # Every field comes back converted as the ORM gives it (UUIDs, datetimes, integers).
    orm = Account.objects.get(pk=first.pk)
    assert {f.attname: getattr(found[0], f.attname) for f in Account._meta.concrete_fields} == {
        f.attname: getattr(orm, f.attname) for f in Account._meta.concrete_fields
    }
    assert found[0]._state.adding is False and found[0]._state.db == "default"

    balance = merchant_balance_account(merchant=merchant, currency="usd")
    merchant_rows = rows.select(Account, [{"merchant_id": merchant.pk, "customer_id": None, "kind": balance.kind}])
    assert balance.pk in _ids(merchant_rows)
    assert all(a.customer_id is None for a in merchant_rows)

    usd = rows.select(Account, [{"kind": "customer_wallet", "merchant_id": merchant.pk, "currency": ["usd", "gbp"]}])
    assert sorted(_ids(usd), key=str) == sorted([wallets[0].pk, wallets[2].pk], key=str)


def test_conjunctions_are_ored_ordered_and_limited(merchant, wallets):
    where = [{"id": [wallets[0].pk]}, {"id": wallets[1].pk}, {"id": [wallets[2].pk, uuid.uuid4()]}]
    ordered = rows.select(Account, where, order_by="id")
    assert _ids(ordered) == sorted(_ids(wallets), key=str)
    assert _ids(rows.select(Account, where, order_by="-id")) == _ids(ordered)[::-1]
    assert len(rows.select(Account, where, order_by="id", limit=2)) == 2


def test_comparisons_several_orderings_and_offsets_match_the_orm(merchant, wallets):
    from datetime import timedelta

    from django.db.models import F

    Account.objects.filter(pk=wallets[0].pk).update(balance=5)
    Account.objects.filter(pk=wallets[1].pk).update(balance=5, created_at=F("created_at") - timedelta(days=1))
    Account.objects.filter(pk=wallets[2].pk).update(balance=0)
    mine = Account.objects.filter(merchant=merchant, kind="customer_wallet")
    cut = Account.objects.get(pk=wallets[0].pk).created_at
    for lookup in ("gt", "gte", "lt", "lte"):
        for field, value in (("balance", 0), ("balance", 5), ("balance", 9), ("created_at", cut)):
            where = [{"merchant_id": merchant.pk, "kind": "customer_wallet", f"{field}__{lookup}": value}]
            orm = mine.filter(**{f"{field}__{lookup}": value})
            assert sorted(_ids(rows.select(Account, where)), key=str) == sorted(_ids(orm), key=str), (field, lookup)
    where = [{"merchant_id": merchant.pk, "kind": "customer_wallet"}]
    for order in (("-balance", "created_at"), ("balance", "-id"), ("-balance", "-created_at", "id")):
        expected = _ids(mine.order_by(*order))
        assert _ids(rows.select(Account, where, order_by=order)) == expected
        assert _ids(rows.select(Account, where, order_by=order, limit=1, offset=1)) == expected[1:2]
        assert _ids(rows.select(Account, where, order_by=order, offset=2)) == expected[2:]
    with pytest.raises(ValueError):
        rows.select(Account, [{"balance__ne": 0}])
    with pytest.raises(ValueError):
        rows.select(Account, [{"balance__gt": None}])


def test_an_empty_in_matches_nothing(wallets):
    assert rows.select(Account, [{"id": []}]) == []
    assert _ids(rows.select(Account, [{"id": []}, {"id": wallets[0].pk}])) == [wallets[0].pk]


@pytest.mark.django_db(transaction=True)
def test_a_lock_needs_a_transaction(wallets):
    with pytest.raises(TransactionManagementError):
        rows.select(Account, [{"id": wallets[0].pk}], for_no_key_update=True)
    with transaction.atomic():
        assert _ids(rows.select(Account, [{"id": wallets[0].pk}], for_no_key_update=True)) == [wallets[0].pk]


def test_insert_fills_defaults_as_save_does_and_update_counts_what_it_changed(db):
    from django.db import IntegrityError
    from django.utils import timezone

    from config.models import IdempotencyKey

    row = rows.insert(IdempotencyKey(scope="s", key="k", method="POST", path="/p", request_hash="h"))
    stored = IdempotencyKey.objects.get(pk=row.pk)
    assert stored.state == IdempotencyKey.State.IN_FLIGHT and stored.created_at == row.created_at is not None
    assert row._state.adding is False
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.insert(IdempotencyKey(scope="s", key="k", method="POST", path="/p", request_hash="h"))

    mine = {"id": row.pk, "state": IdempotencyKey.State.IN_FLIGHT, "created_at": row.created_at}
    done = {"state": IdempotencyKey.State.DONE, "response_status": 201, "completed_at": timezone.now()}
    assert rows.update(IdempotencyKey, mine, done) == 1
    assert rows.update(IdempotencyKey, mine, done) == 0  # no longer in flight
    stored.refresh_from_db()
    assert (stored.state, stored.response_status) == (IdempotencyKey.State.DONE, 201)


def _events(payment, count):
    from payments.models import PaymentEvent

    return [PaymentEvent(payment=payment, type=f"test.{i}", source="api", data={"i": i}) for i in range(count)]


@pytest.mark.parametrize("count", [1, 3, 20])
def test_insert_and_insert_many_fill_auto_ids_in_order(merchant, count):
    from payments.models import Payment, PaymentEvent

    payment = Payment.objects.create(merchant=merchant, order_id="o-rows", amount=100, currency="usd", provider="mock")
    events = _events(payment, count)
    if count == 1:
        assert rows.insert(events[0]) is events[0]
    else:
        rows.insert_many(events)
    assert all(e.pk is not None and not e._state.adding for e in events)
    stored = {e.pk: (e.type, e.data) for e in PaymentEvent.objects.filter(payment=payment)}
    assert stored == {e.pk: (e.type, e.data) for e in events}


def test_update_then_insert_changes_the_row_and_records_it_or_does_neither(merchant):
    from django.utils import timezone

    from payments.models import Payment, PaymentEvent

    payment = Payment.objects.create(merchant=merchant, order_id="o-then", amount=100, currency="usd", provider="mock")
    now = timezone.now()
    [event] = _events(payment, 1)
    assert rows.update_then_insert(Payment, payment.pk, {"status": "failed", "updated_at": now}, event) == 1
    assert event.pk is not None and not event._state.adding
    stored = Payment.objects.get(pk=payment.pk)
    assert (stored.status, stored.updated_at) == ("failed", now)
    recorded = PaymentEvent.objects.get(pk=event.pk)
    assert (recorded.payment_id, recorded.type, recorded.data) == (payment.pk, "test.0", {"i": 0})
    assert recorded.created_at == event.created_at is not None

    [orphan] = _events(payment, 1)
    assert rows.update_then_insert(Payment, uuid.uuid4(), {"status": "succeeded", "updated_at": now}, orphan) == 0
    assert orphan.pk is None and orphan._state.adding
    assert PaymentEvent.objects.filter(payment=payment).count() == 1
    assert Payment.objects.get(pk=payment.pk).status == "failed"


def test_insert_many_stores_every_value_as_bulk_create_does(merchant, customer):
    """Times to the microsecond, uuids, big integers, text and JSON with what needs
    escaping (quotes, backslashes, newlines, non-ASCII), a JSON string, JSON null inside
    a document and nulls: the same rows whichever way they are written."""
    import datetime

    from payments.models import Payment

    at = datetime.datetime(2027, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.UTC)
    tricky = 'a "quoted" \\ back\\slash, a\nnewline, \u00e9, \U0001f4b3 and \u2028'
    variants = [
        {"metadata": {"note": tricky, "none": None, "nested": [1, {"ok": True}, 2.5]}, "description": tricky},
        {"metadata": "just a string", "customer": None, "reconcile_claimed_at": at},
        {"metadata": {}, "split_instructions": [{"account": str(uuid.uuid4()), "amount": 2**62}]},
    ]

    def made(prefix):
        return [
            Payment(
                merchant=merchant,
                order_id=f"{prefix}-{i}",
                amount=2**62 + i,
                currency="usd",
                provider="mock",
                **{"customer": customer, **variant},
            )
            for i, variant in enumerate(variants)
        ]

    rows.insert_many(made("many"))
    Payment.objects.bulk_create(made("bulk"))
    own = ("id", "order_id", "created_at", "updated_at")
    fields = [f.attname for f in Payment._meta.concrete_fields if f.attname not in own]

    def stored(prefix):
        return list(Payment.objects.filter(order_id__startswith=f"{prefix}-").order_by("order_id").values(*fields))

    assert stored("many") == stored("bulk")
    assert stored("many")[1]["reconcile_claimed_at"] == at


def test_insert_many_refuses_a_batch_where_only_some_rows_carry_their_auto_id(merchant):
    """One statement writes one column list: a row's own id would be dropped, or another
    row's missing one written as NULL."""
    from payments.models import Payment, PaymentEvent

    payment = Payment.objects.create(merchant=merchant, order_id="o-mixed", amount=100, currency="usd", provider="mock")
    events = _events(payment, 3)
    events[1].pk = 10_000_000
    with pytest.raises(ValueError, match="auto-incremented id"):
        rows.insert_many(events)
    assert not PaymentEvent.objects.filter(payment=payment).exists()


def test_related_and_first_of_answer_as_select_related_and_a_subquery_do(merchant, customer):
    """The joined merchant is the row select_related gives (no lazy read of it later), and
    first_of is the id of a referencing row, None when there is none; with a lock, only
    the model's own rows are locked."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments.models import Charge, Payment

    def payment(order_id):
        return Payment.objects.create(merchant=merchant, order_id=order_id, amount=100, currency="usd", provider="mock")

    owned, free = payment("o-owned"), payment("o-free")
    charge = Charge.objects.create(
        merchant=merchant, customer=customer, payment=owned, amount=100, currency="usd", external_amount=100
    )
    found = rows.select(
        Payment,
        [{"id": [owned.pk, free.pk]}],
        order_by="order_id",
        related=("merchant",),
        first_of=(("owner", Charge, "payment_id"),),
    )
    assert [(p.pk, p.owner) for p in found] == [(free.pk, None), (owned.pk, charge.pk)]
    orm = Payment.objects.get(pk=owned.pk)
    assert {f.attname: getattr(found[1], f.attname) for f in Payment._meta.concrete_fields} == {
        f.attname: getattr(orm, f.attname) for f in Payment._meta.concrete_fields
    }
    with CaptureQueriesContext(connection) as queries:
        merchants = [p.merchant for p in found]
    assert len(queries) == 0
    assert {f.attname: getattr(merchants[0], f.attname) for f in type(merchant)._meta.concrete_fields} == {
        f.attname: getattr(merchant, f.attname) for f in type(merchant)._meta.concrete_fields
    }
    with transaction.atomic():
        locked = rows.select(Payment, [{"id": free.pk}], related=("merchant",), for_no_key_update=True)
        assert [p.pk for p in locked] == [free.pk] and locked[0].merchant.pk == merchant.pk
    with pytest.raises(ValueError, match="non-null forward foreign key"):
        rows.select(Payment, [{"id": free.pk}], related=("customer",))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_skip_locked_leaves_out_a_row_another_transaction_holds(wallets):
    """As select_for_update(skip_locked=True): a second transaction does not wait for the
    held row, it does not see it; a row nobody holds it locks as usual."""
    import threading

    from django.db import connections

    held, free = wallets[0].pk, wallets[1].pk
    locked, release, seen = threading.Event(), threading.Event(), {}

    def holder():
        try:
            with transaction.atomic():
                rows.select(Account, [{"id": held}], for_no_key_update=True)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            seen["held"] = rows.select(Account, [{"id": held}], for_no_key_update=True, skip_locked=True)
            seen["free"] = rows.select(Account, [{"id": free}], for_no_key_update=True, skip_locked=True)
    finally:
        release.set()
        thread.join(10)
    assert seen["held"] == []
    assert _ids(seen["free"]) == [free]
