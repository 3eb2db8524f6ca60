"""The music world: catalog, hidden embeddings and users, and their generator."""

from botify.world.generate import WorldSpec, generate_world
from botify.world.model import Catalog, Users, World, world_exists

__all__ = ["Catalog", "Users", "World", "WorldSpec", "generate_world", "world_exists"]
