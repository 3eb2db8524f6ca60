"""Contextual models (course weeks 6 and 9, and a student's homework), in PyTorch.

`contextual`: the time a listener plays a candidate track given the first track of the
session, sigmoid(context(start) · item(candidate) + bias(candidate)), fitted to time played.
Each side reads the track's catalog features (an artist embedding and a projection of its
genres, main genre, mood, decade and country) beside its id embedding: ids alone learn
nothing from Random-served logs, where each track was recommended a handful of times.
Each track's list is its nearest items by that score (exact inner-product search), served by
the `contextual` recommender with the previous track as the context.

`contextual-user`: the same with a user embedding added to the context,
(context(start) + user(u)) · item(candidate); the homework's settings were dimension 64,
learning rate 0.05, batch 2048. Its per-user lists use the user's latest session start.

With `features = false` both sides are id embeddings only (the course's original model).
The per-track lists carry the predicted time played as scores, so the `i2i` recommender can
re-rank them by artist fatigue (`artist_discount`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from botify.train.base import Lists, Model, progress
from botify.train.features import CatalogFeatures
from botify.train.dataset import Interactions
from botify.train.neural import batches, heard_by_user, require_torch, session_starts, top_k, top_k_scored
from botify.world.model import Catalog


@dataclass(kw_only=True)
class Contextual(Model):
    """PyTorch: time played given the session's first track; per-track lists (for `contextual`).

    Parameters
    ----------
    dim : int
        Embedding size.
    epochs : int
        Passes over the plays.
    lr : float
        Adam's learning rate.
    batch : int
        Plays per step.
    size : int
        Length of each list.
    seed : int
        Seed of initialisation and sampling.
    features : bool
        Add an artist embedding and the catalog metadata to each side's id embedding.
    """

    name = "contextual"
    artifact_kind = "track"
    with_user: ClassVar[bool] = False
    dim: int = 32
    epochs: int = 15
    lr: float = 0.01
    batch: int = 2048
    size: int = 100
    seed: int = 42
    features: bool = True

    def fit(self, train: Interactions, catalog: Catalog) -> Contextual:
        torch = require_torch()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n, dim = catalog.size, self.dim
        starts = session_starts(train)
        rows = train.position > 0
        users, user_rows = np.unique(train.user, return_inverse=True)
        nn = torch.nn
        features = CatalogFeatures(catalog)
        dense, artists = torch.as_tensor(features.dense), torch.as_tensor(features.artist)
        n_artists = int(features.artist.max()) + 1
        use_features = self.features

        class Side(nn.Module):
            """A track as a context or a candidate: id + artist embedding + catalog features."""

            def __init__(self, width: int) -> None:
                super().__init__()
                self.id = nn.Embedding(n, width)
                self.artist = nn.Embedding(n_artists, width)
                self.features = nn.Linear(dense.shape[1], width)
                for table in (self.id, self.artist):
                    nn.init.normal_(table.weight, std=0.1)

            def forward(self, ids):
                if not use_features:
                    return self.id(ids)
                return self.id(ids) + self.artist(artists[ids]) + self.features(dense[ids])

        context, item, bias = Side(dim), Side(dim), Side(1)
        person = nn.Embedding(len(users), dim)
        nn.init.normal_(person.weight, std=0.1)
        parameters = [*context.parameters(), *item.parameters(), *bias.parameters()]
        if self.with_user:
            parameters += list(person.parameters())
        optimizer = torch.optim.Adam(parameters, lr=self.lr)
        start_t = torch.as_tensor(starts[rows])
        cand_t = torch.as_tensor(train.track[rows])
        user_t = torch.as_tensor(user_rows[rows])
        time_t = torch.as_tensor(train.time[rows], dtype=torch.float32)
        for _ in progress(self.epochs, f"{self.name}: epochs"):
            for index in batches(len(time_t), self.batch, rng):
                index = torch.as_tensor(index)
                query = context(start_t[index])
                if self.with_user:
                    query = query + person(user_t[index])
                logit = (query * item(cand_t[index])).sum(-1) + bias(cand_t[index]).squeeze(-1)
                loss = torch.nn.functional.mse_loss(torch.sigmoid(logit), time_t[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            every = torch.arange(n)
            self.item_vectors = item(every).numpy()
            items = np.hstack([self.item_vectors, bias(every).numpy()])
            contexts = context(every).numpy()
            people = person.weight.numpy()
        ones = np.ones((n, 1), dtype=np.float32)
        if not self.with_user:
            # catalog features give every track a list, played or not
            keys = np.arange(n) if self.features else np.unique(train.track)
            queries = np.hstack([contexts[keys], ones[keys]])
            ids, logits = top_k_scored(queries, items, min(n, self.size + 1))
            self.recommendations, self.scores = {}, {}
            for key, row, values in zip(keys.tolist(), ids, logits):
                keep = (row >= 0) & (row != key)  # not the context track itself
                self.recommendations[key] = row[keep][: self.size].tolist()
                # the predicted time played, sigmoid(logit): non-increasing as the list is
                self.scores[key] = (1.0 / (1.0 + np.exp(-values[keep][: self.size].astype(np.float64)))).tolist()
            return self
        latest_start = {}
        for user, start in zip(train.user.tolist(), starts.tolist()):
            latest_start[user] = start  # rows are ordered by session: the last one wins
        heard = heard_by_user(train)
        queries = np.vstack([np.append(contexts[latest_start[u]] + people[i], 1.0) for i, u in enumerate(users.tolist())])
        found = top_k(queries, items, self.size, [heard[u] for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations

    def artifacts(self) -> dict[str, Lists]:
        """Per-track lists with the predicted time played as scores (so the `i2i` recommender
        can re-rank them by artist fatigue); per-user lists as before."""
        if self.with_user:
            return super().artifacts()
        return {"item2item.jsonl": Lists("track", self.recommendations, self.scores)}


@dataclass(kw_only=True)
class ContextualUser(Contextual):
    """PyTorch: the contextual model plus a user embedding; per-user lists (for `indexed`).

    The homework's settings are the defaults; parameters not listed here are documented on
    `contextual`.

    Parameters
    ----------
    dim : int
        Embedding size (the homework's 64).
    lr : float
        Adam's learning rate (the homework's 0.05).
    """

    name = "contextual-user"
    artifact_kind = "user"
    with_user: ClassVar[bool] = True
    dim: int = 64
    epochs: int = 30
    lr: float = 0.05
