"""The botify service: the course's HTTP API, stores, A/B experiments, recommenders, event log."""

from botify.service.app import BotifyApp, ServiceData
from botify.service.experiments import Experiment, ExperimentsConfig, RecommenderSpec
from botify.service.recommenders import Query, Recommender
from botify.service.settings import ServiceSettings

__all__ = [
    "BotifyApp", "Experiment", "ExperimentsConfig", "Query", "Recommender", "RecommenderSpec",
    "ServiceData", "ServiceSettings",
]
