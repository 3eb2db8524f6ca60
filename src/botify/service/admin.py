"""The admin token: `/admin/*` endpoints answer only requests that carry it.

The token comes from `BOTIFY_ADMIN_TOKEN` (or the settings); failing that, from a file only
its owner can read, generated on first use (`~/.botify/admin-token` by default), so that the
operator who started the service, and no one else on the machine, can reload it. Requests
send it as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from botify.errors import BotifyError
from botify.service.settings import ADMIN_TOKEN_ENV, ServiceSettings


def read_token_file(path: Path) -> str | None:
    """The token kept in `path`, or None if there is none; refuses a file others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BotifyError(f"{path}: the admin token file is readable by others; chmod 600 {path} or delete it")
    token = path.read_text(encoding="utf-8").strip()
    return token or None


def resolve_admin_token(settings: ServiceSettings) -> tuple[str, str]:
    """The token and where it came from (for the banner, never the token itself)."""
    if settings.admin_token:
        return settings.admin_token, "the settings"
    if os.environ.get(ADMIN_TOKEN_ENV):
        return os.environ[ADMIN_TOKEN_ENV], f"${ADMIN_TOKEN_ENV}"
    path = settings.admin_token_file
    token = read_token_file(path)
    if token is None:
        try:
            token = _create_token_file(path)
        except OSError as error:
            raise BotifyError(f"cannot write the admin token to {path} ({error.strerror}); "
                              f"set {ADMIN_TOKEN_ENV} instead") from None
    return token, str(path)


def _create_token_file(path: Path) -> str:
    """A new token in `path`, which appears whole or not at all: written to a file of its own,
    then linked into place, so that a reader never finds it empty and, of services started at
    once, the first to link wins and the others take its token (an empty `path` is replaced)."""
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        try:
            os.link(written, path)
        except FileExistsError:
            existing = read_token_file(path)
            if existing is not None:
                return existing
            os.replace(written, path)
    finally:
        written.unlink(missing_ok=True)
    return token


def authorized(header: bytes | None, token: str) -> bool:
    """Whether an Authorization header carries the token (constant-time comparison)."""
    if not header or not header.startswith(b"Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip(), token.encode())


def client_token(settings_file: Path | None = None) -> str | None:
    """The token a local client should send: `BOTIFY_ADMIN_TOKEN`, else the default token file."""
    if os.environ.get(ADMIN_TOKEN_ENV):
        return os.environ[ADMIN_TOKEN_ENV]
    path = settings_file or ServiceSettings.model_fields["admin_token_file"].default
    try:
        return read_token_file(path)
    except (BotifyError, OSError):
        return None
