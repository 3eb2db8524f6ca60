"""botify: an open lab for music recommender systems.

`botify.simulate`, `botify.analyze`, `botify.user_metrics` and `botify.read_events` are the Python
API (see `botify.api`), loaded on first use. Importing botify registers its Gymnasium environment, so that
`gymnasium.make("botify/Listening-v0", world=DIR)` works after `import botify` (the entry
point is a string: the simulator is imported only when an environment is made).
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"
ENV_ID = "botify/Listening-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="botify.sim.env:make_listening")

API = ("simulate", "analyze", "user_metrics", "read_events")


def __getattr__(name: str):
    if name in API:  # the API loads NumPy and the rest on first use, not at `import botify`
        from botify import api

        return getattr(api, name)
    raise AttributeError(f"module 'botify' has no attribute {name!r}")
