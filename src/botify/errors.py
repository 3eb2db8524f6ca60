"""Errors that botify shows to its users as a message, not a traceback."""


class BotifyError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback."""


class WorldError(BotifyError):
    """A world directory is missing a file or holds inconsistent data."""


class Unavailable(BotifyError):
    """Something the service needs cannot serve now (store, event log); answered 503, retry later."""
