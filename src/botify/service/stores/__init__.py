"""Where the service keeps tracks, artist → tracks, listen histories and artifacts.

One interface (`Store`), two backends: `EmbeddedStore` (in-process, nothing to install) and
`RedisStore` (a real Redis server shared by several workers). `open_store` picks one.
"""

from botify.errors import BotifyError
from botify.service.settings import ServiceSettings
from botify.service.stores.base import (
    InFlight,
    Listen,
    Listens,
    Ranked,
    Recorded,
    Store,
    StoreUnavailable,
    artists_of,
    data_version,
    tracks_of,
)
from botify.service.stores.embedded import EmbeddedStore


def open_store(settings: ServiceSettings) -> Store:
    """An embedded store, or a Redis one when the settings name a Redis URL."""
    options = dict(session_length=settings.session_length, session_ttl=settings.session_ttl,
                   idempotency_window=settings.idempotency_window)
    if settings.redis:
        try:
            from botify.service.stores.redis import RedisStore
        except ImportError as error:
            raise BotifyError(f"--redis needs the Redis client: pip install 'botify[redis]' for hiredis ({error})") from error

        return RedisStore(settings.redis, settings.history_length, settings.redis_timeout, **options)
    return EmbeddedStore(settings.history_length, max_users=settings.max_users, **options)


__all__ = ["EmbeddedStore", "InFlight", "Listen", "Listens", "Ranked", "Recorded", "Store", "StoreUnavailable", "artists_of",
           "data_version", "open_store", "tracks_of"]
