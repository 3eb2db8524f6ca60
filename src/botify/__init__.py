"""botify: an open lab for music recommender systems."""

__version__ = "0.1.0"
