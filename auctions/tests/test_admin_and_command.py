"""Staff's side: the admin (read-only, changes through actions that call the services,
each with its own permission), the finalize_auctions command and the periodic task."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from auctions.models import Auction
from auctions.services import bid_place
from auctions.tests.factories import end_now, make_auction
from config.periodic import ensure_periodic_tasks, registered
from payments.tests.factories import CustomerFactory
from wallets.models import Account, Hold
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:auctions_auction_changelist"


@pytest.fixture
def staff(django_user_model):
    def make(*codenames):
        from django.contrib.auth.models import Permission

        user = django_user_model.objects.create_user(f"ops-{len(codenames)}", password="pw", is_staff=True)
        perms = Permission.objects.filter(content_type__app_label="auctions", codename__in=codenames)
        assert perms.count() == len(codenames), "a permission is missing: is the migration applied?"
        user.user_permissions.set(perms)
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def auction_with_bids(merchant):
    seller = CustomerFactory(merchant=merchant)
    auction = make_auction(merchant=merchant, seller=seller, title="Clock")
    for amount in (1_234, 2_000):
        wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=5_000)
        bid_place(auction=auction, bidder=wallet.customer, amount=amount)
    return auction


def test_the_admin_shows_auctions_with_their_bids_and_filters_by_status(staff, auction_with_bids):
    client = staff("view_auction", "view_bid", "view_auctionevent")
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and b"Clock" in page.content and b"$20.00" in page.content
    assert b"Clock" not in client.get(reverse(CHANGELIST) + "?status__exact=settled").content
    assert b"Clock" in client.get(reverse(CHANGELIST) + "?status__exact=open").content
    detail = client.get(reverse("admin:auctions_auction_change", args=[auction_with_bids.pk]))
    assert detail.status_code == 200 and b"$12.34" in detail.content and b"bid.placed" in detail.content
    assert b"cancel_auctions" not in page.content and b"finalize_now" not in page.content  # view only


def test_the_admin_is_read_only(staff, auction_with_bids):
    client = staff("view_auction", "change_auction", "delete_auction")
    url = reverse("admin:auctions_auction_change", args=[auction_with_bids.pk])
    assert client.post(url, {"title": "Renamed"}).status_code == 403
    assert (
        client.post(reverse("admin:auctions_auction_delete", args=[auction_with_bids.pk]), {"post": "yes"}).status_code
        == 403
    )
    auction_with_bids.refresh_from_db()
    assert auction_with_bids.title == "Clock"


def test_cancel_action_voids_every_hold(staff, auction_with_bids):
    client = staff("view_auction", "cancel_auction")
    response = client.post(
        reverse(CHANGELIST),
        {"action": "cancel_auctions", ACTION_CHECKBOX_NAME: [str(auction_with_bids.pk)]},
        follow=True,
    )
    assert b"1 auctions canceled" in response.content
    auction_with_bids.refresh_from_db()
    assert auction_with_bids.status == "canceled"
    assert not Hold.objects.filter(status="pending").exists()
    assert auction_with_bids.timeline.last().source == "staff"


def test_finalize_now_settles_ended_auctions_and_says_why_it_refuses_the_others(staff, auction_with_bids, merchant):
    client = staff("view_auction", "finalize_auction")
    running = make_auction(merchant=merchant, title="Running")
    end_now(auction_with_bids)
    ids = [str(auction_with_bids.pk), str(running.pk)]

    response = client.post(reverse(CHANGELIST), {"action": "finalize_now", ACTION_CHECKBOX_NAME: ids}, follow=True)

    assert b"Finalized: settled: 1." in response.content and b"finalize it after" in response.content
    auction_with_bids.refresh_from_db()
    running.refresh_from_db()
    assert (auction_with_bids.status, running.status) == ("settled", "open")
    assert Account.objects.get(pk=auction_with_bids.proceeds_account_id).balance == 2_000


def test_actions_need_their_own_permission(staff, auction_with_bids):
    client = staff("view_auction")
    end_now(auction_with_bids)
    for action in ("cancel_auctions", "finalize_now"):
        client.post(reverse(CHANGELIST), {"action": action, ACTION_CHECKBOX_NAME: [str(auction_with_bids.pk)]})
    auction_with_bids.refresh_from_db()
    assert auction_with_bids.status == "open"


def test_the_command_finalizes_ended_auctions_with_a_progress_bar(auction_with_bids, merchant, capsys):
    end_now(auction_with_bids)
    end_now(make_auction(merchant=merchant, title="No bids"))
    make_auction(merchant=merchant, title="Running")

    call_command("finalize_auctions")

    out, err = capsys.readouterr()
    assert "Finalized: settled: 1, unsold: 1." in out
    assert "2/2" in err  # tqdm's bar
    assert dict(Auction.objects.values_list("title", "status")) == {
        "Clock": "settled",
        "No bids": "unsold",
        "Running": "open",
    }
    call_command("finalize_auctions")
    assert "nothing to finalize" in capsys.readouterr().out


def test_the_command_fails_when_an_auction_cannot_be_settled(auction_with_bids, monkeypatch):
    from auctions import services
    from config.errors import IllegalTransition

    def broken(*args, **kwargs):
        raise IllegalTransition("the hold is gone")

    monkeypatch.setattr(services, "hold_capture", broken)
    end_now(auction_with_bids)
    with pytest.raises(CommandError, match="1 auctions could not be finalized"):
        call_command("finalize_auctions")
    auction_with_bids.refresh_from_db()
    assert auction_with_bids.status == "open"  # rolled back whole: its holds still pending
    assert Hold.objects.filter(status="pending").count() == 2


def test_the_periodic_task_is_registered_and_runs_the_finalizer(auction_with_bids):
    from django_celery_beat.models import PeriodicTask

    from auctions.tasks import auctions_finalize_task

    [spec] = [s for s in registered() if s.task == "auctions.tasks.auctions_finalize_task"]
    assert spec.every_seconds == 60
    ensure_periodic_tasks()
    assert PeriodicTask.objects.filter(task="auctions.tasks.auctions_finalize_task").exists()

    end_now(auction_with_bids)
    assert auctions_finalize_task.delay().get() == {"settled": 1}
