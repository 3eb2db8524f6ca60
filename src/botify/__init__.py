"""botify: an open lab for music recommender systems.

Importing botify registers its Gymnasium environment, so that
`gymnasium.make("botify/Listening-v0", world=DIR)` works after `import botify` (the entry
point is a string: the simulator is imported only when an environment is made).
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"
ENV_ID = "botify/Listening-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="botify.sim.env:make_listening")
