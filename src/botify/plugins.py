"""The one loader for "module:Class" plugins: agents, recommenders and models.

The current directory is importable, as it is for `python -m`, so a user's `mymodule.py`
beside their config works without setting PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
import sys

from botify.errors import BotifyError


def load_object(spec: str, what: str) -> object:
    """The attribute `Class` of module `module` for "module:Class"; `what` names the kind of
    plugin in errors ("agent", "recommender", "model")."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise BotifyError(f"{what} {spec!r}: expected module:Class")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BotifyError(f"cannot load {what} {spec!r}: {error}") from error
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise BotifyError(f"cannot load {what} {spec!r}: module {module_name!r} has no {attribute!r}") from None
