"""Where the service keeps tracks, artist → tracks, listen histories and artifacts.

One interface (`Store`), two backends: `EmbeddedStore` (in-process, nothing to install) and
`RedisStore` (a real Redis server shared by several workers). `open_store` picks one.
"""

from botify.errors import BotifyError
from botify.service.stores.base import Listen, Ranked, Store, StoreUnavailable, data_version
from botify.service.stores.embedded import EmbeddedStore


def open_store(redis_url: str | None, history_length: int, timeout: float = 0.5, session_length: int = 500,
               session_ttl: float = 3600.0) -> Store:
    """An embedded store, or a Redis one when a URL is given."""
    if redis_url:
        try:
            from botify.service.stores.redis import RedisStore
        except ImportError as error:
            raise BotifyError(f"--redis needs the Redis client: pip install 'botify[redis]' for hiredis ({error})") from error

        return RedisStore(redis_url, history_length, timeout, session_length, session_ttl)
    return EmbeddedStore(history_length, session_length, session_ttl)


__all__ = ["EmbeddedStore", "Listen", "Ranked", "Store", "StoreUnavailable", "data_version", "open_store"]
