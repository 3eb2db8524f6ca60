"""botify studio: people in the loop — as listeners, as the recommender, and as the audience of
a running experiment (`botify studio`, `botify serve --studio`, `botify demo --studio`)."""

from botify.studio.person import Person

__all__ = ["Person"]
