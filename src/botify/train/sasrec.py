"""SASRec-style sequential next-track model that learns what a session rewards (in PyTorch).

The course's later editions serve SASRec- and HSTU-style item-to-item lists. botify's logs
hold sessions whose next tracks were chosen by the serving policy (on day 1, at random), so
the next track itself says little; what the logs do say is how long each track was played
given the session so far. The model therefore learns to predict *time played*:

- every track is read through its catalog features (artist embedding, genres, main genre,
  mood, decade, country), plus a small id embedding, so what is learned about one track
  carries over to the thousands never recommended;
- a causal self-attention layer over the session's tracks and the times they were played
  gives the session's state after each play;
- a candidate's logit is state · candidate + its bias + learned weights on its match features
  with the session's first track (same artist, shared genres, mood, ...), and the predicted
  time is sigmoid(logit) × discount ** (plays of its artist so far in the session), with the
  per-play `discount` learned too (fatigue with one artist);
- the loss is the binary cross-entropy of that prediction against the time actually played.

Served form: item-to-item lists. For every track t, the `size` tracks with the highest
predicted time for a session that so far holds t (played in full), fatigue left out, with
those predictions as scores; the service's `i2i` recommender combines them online over the
session (its first track, or a time-weighted mix of its recent plays) and re-ranks them with
`artist_discount` (the manifest records the learned `discount` to use there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botify.train.base import Lists, Model
from botify.train.dataset import Interactions
from botify.train.features import MATCHES, CatalogFeatures
from botify.train.neural import require_torch
from botify.world.model import Catalog


def session_matrix(train: Interactions, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Sessions as rows of (at most `length`) tracks and times played; -1 pads tracks."""
    starts = np.flatnonzero(train.position == 0)
    session = np.cumsum(train.position == 0) - 1
    keep = train.position < length
    tracks = np.full((len(starts), length), -1, dtype=np.int64)
    times = np.zeros((len(starts), length), dtype=np.float32)
    tracks[session[keep], train.position[keep]] = train.track[keep]
    times[session[keep], train.position[keep]] = train.time[keep]
    return tracks, times


@dataclass(kw_only=True)
class SASRec(Model):
    """SASRec-style sequential model over sessions and catalog features, trained on time played;
    scored item-to-item lists (for `i2i`).

    Parameters
    ----------
    dim : int
        Width of the track representations and the attention layer.
    heads : int
        Attention heads.
    length : int
        Longest session prefix the model reads (later plays are left out of training).
    epochs : int
        Passes over the training sessions.
    lr : float
        Adam's learning rate.
    batch : int
        Sessions per step.
    weight_decay : float
        Adam's L2 penalty.
    size : int
        Length of each track's list.
    seed : int
        Seed of initialisation and batching.
    """

    name = "sasrec"
    artifact_kind = "track"
    dim: int = 48
    heads: int = 2
    length: int = 20
    epochs: int = 8
    lr: float = 0.005
    batch: int = 256
    weight_decay: float = 1e-5
    size: int = 100
    seed: int = 42

    def _network(self, torch, features: CatalogFeatures):
        nn = torch.nn
        dim, heads = self.dim, self.heads
        dense = torch.as_tensor(features.dense())
        artists = torch.as_tensor(features.artist)
        n_tracks, n_artists = features.size, int(features.artist.max()) + 1

        class Network(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.artist = nn.Embedding(n_artists, dim)
                self.track = nn.Embedding(n_tracks, dim)
                self.item = nn.Sequential(nn.Linear(dense.shape[1], dim), nn.ReLU(), nn.Linear(dim, dim))
                self.candidate = nn.Linear(dim, dim)
                self.bias = nn.Linear(dim, 1)
                self.played = nn.Linear(1, dim)
                self.position = nn.Embedding(64, dim)
                self.attention = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True)
                self.match = nn.Linear(len(MATCHES), 1)
                self.fatigue = nn.Parameter(torch.tensor(1.0))  # discount = sigmoid(fatigue)
                for table in (self.artist, self.track, self.position):
                    nn.init.normal_(table.weight, std=0.05)

            def items(self, ids):
                return self.item(dense[ids]) + self.artist(artists[ids]) + self.track(ids)

            def states(self, tracks, times):
                """The session's state after each play (causal attention)."""
                valid = tracks >= 0
                safe = tracks.clamp(min=0)
                steps = torch.arange(tracks.shape[1])
                inputs = self.items(safe) + self.played(times.unsqueeze(-1)) + self.position(steps)
                mask = torch.triu(torch.ones(len(steps), len(steps), dtype=torch.bool), diagonal=1)
                return self.attention(inputs, src_mask=mask, src_key_padding_mask=~valid)

            def logits(self, state, candidates, matches):
                item = self.items(candidates)
                return ((state * self.candidate(item)).sum(-1) + self.bias(item).squeeze(-1)
                        + self.match(matches).squeeze(-1))

            @property
            def discount(self):
                return torch.sigmoid(self.fatigue)

        return Network()

    def fit(self, train: Interactions, catalog: Catalog) -> SASRec:
        torch = require_torch()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        features = CatalogFeatures.of(catalog)
        tracks, times = session_matrix(train, self.length)
        tracks, times = tracks[(tracks[:, 1:] >= 0).any(axis=1)], times[(tracks[:, 1:] >= 0).any(axis=1)]
        if not len(tracks):
            raise ValueError("sasrec needs sessions of at least two tracks")
        # Per (session, position >= 1): match features of the track with the session's first
        # track, and earlier plays of its artist in the session.
        safe = np.maximum(tracks, 0)
        matches = features.pair_matches(np.repeat(safe[:, :1], tracks.shape[1], axis=1), safe)
        artist = features.artist[safe]
        earlier = np.zeros(tracks.shape, dtype=np.float32)
        for position in range(1, tracks.shape[1]):
            same = (artist[:, :position] == artist[:, position : position + 1]) & (tracks[:, :position] >= 0)
            earlier[:, position] = same.sum(axis=1)
        network = self._network(torch, features)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        tracks_t, times_t = torch.as_tensor(tracks), torch.as_tensor(times)
        matches_t, earlier_t = torch.as_tensor(matches), torch.as_tensor(earlier)
        lengths = (tracks >= 0).sum(axis=1)
        per_batch = float(self.batch * (lengths - 1).mean())
        network.train()
        for _ in range(self.epochs):
            # Batches of sessions of similar length, trimmed to their longest: attention costs
            # the square of the length, and most sessions are far shorter than `length`.
            order = np.lexsort((rng.random(len(tracks)), lengths))
            chunks = [order[start : start + self.batch] for start in range(0, len(order), self.batch)]
            for chunk in (chunks[i] for i in rng.permutation(len(chunks))):
                width = int(lengths[chunk].max())
                rows = torch.as_tensor(chunk)
                seq, played = tracks_t[rows, :width], times_t[rows, :width]
                state = network.states(seq[:, :-1], played[:, :-1])
                target_tracks, target = seq[:, 1:], played[:, 1:]
                valid = target_tracks >= 0
                logits = network.logits(state, target_tracks.clamp(min=0), matches_t[rows, 1:width])
                predicted = torch.sigmoid(logits) * network.discount ** earlier_t[rows, 1:width]
                loss = torch.nn.functional.binary_cross_entropy(predicted.clamp(1e-6, 1 - 1e-6), target,
                                                                reduction="none")
                loss = (loss * valid).sum() / per_batch  # every play weighs the same, in any batch
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        network.eval()
        self.discount = float(network.discount.detach())
        self.match_weights = dict(zip(MATCHES, network.match.weight.detach().numpy().ravel().round(4).tolist()))
        self._lists(torch, network, features)
        return self

    def _lists(self, torch, network, features: CatalogFeatures, block: int = 512) -> None:
        """Every track's best next tracks for a session that so far holds just it."""
        n = features.size
        size = min(self.size, n - 1)
        self.recommendations, self.scores = {}, {}
        with torch.no_grad():
            all_ids = torch.arange(n)
            items = network.items(all_ids)
            candidates = network.candidate(items)
            bias = network.bias(items).squeeze(-1)
            weights = network.match.weight.detach().numpy().ravel()
            for start in range(0, n, block):
                anchors = np.arange(start, min(n, start + block))
                ids = torch.as_tensor(anchors).unsqueeze(1)
                state = network.states(ids, torch.ones(ids.shape)).squeeze(1)
                logits = (state @ candidates.T + bias).numpy() + features.weighted_matches(anchors, weights)
                logits += float(network.match.bias)
                logits[np.arange(len(anchors)), anchors] = -np.inf  # not the anchor itself
                top = np.argpartition(-logits, size - 1, axis=1)[:, :size]
                order = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1, kind="stable")
                best = np.take_along_axis(top, order, axis=1)
                probability = 1.0 / (1.0 + np.exp(-np.take_along_axis(logits, best, axis=1)))
                for row, anchor in enumerate(anchors.tolist()):
                    self.recommendations[anchor] = best[row].tolist()
                    self.scores[anchor] = probability[row].tolist()

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations

    def learned(self) -> dict:
        return {"discount": round(self.discount, 4), "match_weights": self.match_weights}

    def artifacts(self) -> dict[str, Lists]:
        return {"item2item.jsonl": Lists("track", self.recommendations, self.scores)}
