"""This process's memory of the API keys that authenticated lately, so a merchant's
request costs no query to know who is calling.

Keyed by the key's hash (the raw key is never kept), an entry lives
API_KEY_CACHE_SECONDS (0: no cache). Only keys that authenticated are remembered
(active, merchant active): an unknown, revoked or suspended key is looked up every time,
so a new key works at once and guessing fills nothing.

Revocation: in the process that revokes a key or changes a merchant (api_key_revoke, an
admin edit or delete: the receivers below), the entry goes at once; every other process
keeps accepting it for at most the TTL, then looks it up again. That staleness is the
price of the query saved, and why the TTL is seconds.

Each caller gets its own model instances, built from the remembered field values:
nothing one request sets on its ApiKey or Merchant (a related object fetched, an
attribute changed) reaches another request or thread.
"""

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiKey, Merchant

_KEY_FIELDS = tuple(f.attname for f in ApiKey._meta.concrete_fields)
_MERCHANT_FIELDS = tuple(f.attname for f in Merchant._meta.concrete_fields)


@dataclass
class _Entry:
    key_values: tuple
    merchant_values: tuple
    merchant_id: object
    expires: float


class ApiKeyCache:
    def __init__(self, *, max_entries: int = 10_000, clock=time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # writers only; a read is one dict lookup

    def get(self, key_hash: str) -> ApiKey | None:
        """The remembered key, its merchant attached, as fresh instances; None if not
        remembered or expired."""
        entry = self._entries.get(key_hash)
        if entry is None or entry.expires <= self.clock():
            return None
        api_key = ApiKey.from_db(ApiKey.objects.db, _KEY_FIELDS, entry.key_values)
        api_key.merchant = Merchant.from_db(Merchant.objects.db, _MERCHANT_FIELDS, entry.merchant_values)
        return api_key

    def put(self, api_key: ApiKey) -> None:
        """Remember a key that just authenticated (its merchant loaded), for the TTL."""
        ttl = settings.API_KEY_CACHE_SECONDS
        if ttl <= 0:
            return
        entry = _Entry(
            key_values=tuple(getattr(api_key, name) for name in _KEY_FIELDS),
            merchant_values=tuple(getattr(api_key.merchant, name) for name in _MERCHANT_FIELDS),
            merchant_id=api_key.merchant_id,
            expires=self.clock() + ttl,
        )
        with self._lock:
            if api_key.key_hash not in self._entries and len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[api_key.key_hash] = entry

    def used(self, api_key: ApiKey) -> None:
        """Carry a new last_used_at into the entry, so api_key_touch's once-a-minute rule
        holds across the requests this entry serves."""
        entry = self._entries.get(api_key.key_hash)
        if entry is not None:
            values = list(entry.key_values)
            values[_KEY_FIELDS.index("last_used_at")] = api_key.last_used_at
            entry.key_values = tuple(values)

    def forget(self, *, key_hash: str | None = None, merchant_id=None) -> None:
        """Drop one key, or every key of a merchant, from this process's memory."""
        with self._lock:
            if key_hash is not None:
                self._entries.pop(key_hash, None)
            if merchant_id is not None:
                for stale in [h for h, e in self._entries.items() if e.merchant_id == merchant_id]:
                    del self._entries[stale]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        now = self.clock()
        for stale in [h for h, e in self._entries.items() if e.expires <= now]:
            del self._entries[stale]
        if len(self._entries) >= self.max_entries:  # all fresh: the oldest goes (dicts keep insertion order)
            del self._entries[next(iter(self._entries))]


api_key_cache = ApiKeyCache()


# A cache entry is the one thing here that must follow any change to these rows made in
# this process, whoever makes it (admin forms and deletes, a shell): hence receivers, for
# cache coherence only. A queryset update() sends no signal; the code that does one (like
# api_key_revoke) calls forget() itself, and a change made elsewhere waits out the TTL.
@receiver([post_save, post_delete], sender=ApiKey, dispatch_uid="api_key_cache_forget_key")
def _api_key_changed(sender, instance: ApiKey, **kwargs) -> None:
    api_key_cache.forget(key_hash=instance.key_hash)


@receiver([post_save, post_delete], sender=Merchant, dispatch_uid="api_key_cache_forget_merchant")
def _merchant_changed(sender, instance: Merchant, **kwargs) -> None:
    api_key_cache.forget(merchant_id=instance.pk)
