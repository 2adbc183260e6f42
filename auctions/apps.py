from django.apps import AppConfig


class AuctionsConfig(AppConfig):
    name = "auctions"

    def ready(self):
        from config import periodic
        from webhooks.registry import register_event_types

        register_event_types("auction.settled", "auction.unsold", "auction.canceled")
        periodic.register(
            name="Finalize ended auctions", task="auctions.tasks.auctions_finalize_task", every_seconds=60
        )
