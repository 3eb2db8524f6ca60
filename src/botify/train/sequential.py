"""A SASRec-style sequential next-track model that learns how long a track will be played.

botify's first logs come from a uniformly random recommender, so which track came next in a
session says nothing; what the logs do say is how long each track was played given the
session so far. This model therefore reads a session left to right and predicts, at every
position, the *time played* of the next track:

- each track is read through the public catalog only: an artist embedding, a projection of its
  genres, main genre, mood, decade and country, and (optionally) a small track-id embedding,
  so what is learned about one track carries over to the thousands never played;
- a play's input is that representation mixed with the time it was played (a track played in
  full and one skipped at once say opposite things about the session's taste), plus its
  position; one or two causal self-attention layers give the session's state after each play;
- a candidate is read through the same catalog features: its logit is the state against the
  candidate's vector, plus a per-candidate bias, plus learned weights on how the candidate
  matches the session's tracks (same artist, shared genres, same main genre, mood, decade,
  country; with the session's first track, and the time-weighted mean over its plays so far);
- the predicted time is sigmoid(logit) × discount ** (earlier plays of the candidate's artist
  in the session), with the per-play `discount` learned too, and the loss is the binary
  cross-entropy against the time actually played (a soft label).

Served form: item-to-item lists (`item2item.jsonl`). For every track t, the `size` tracks of
highest predicted time for a session that so far holds only t, played in full (t excluded,
fatigue left out), with those predictions as non-increasing scores. The service's `i2i`
recommender combines them over the live session and re-ranks them with `artist_discount`
(the manifest records the learned `discount`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botify.train.base import Lists, Model, progress
from botify.train.dataset import Interactions
from botify.train.features import MATCHES, CatalogFeatures
from botify.train.matrix import top_k_others
from botify.train.neural import require_torch
from botify.world.model import Catalog

def session_matrix(train: Interactions, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Sessions as rows of their first `length` tracks and times played; -1 pads tracks."""
    session = np.cumsum(train.position == 0) - 1
    keep = train.position < length
    tracks = np.full((int(session[-1]) + 1 if train.size else 0, length), -1, dtype=np.int64)
    times = np.zeros(tracks.shape, dtype=np.float32)
    tracks[session[keep], train.position[keep]] = train.track[keep]
    times[session[keep], train.position[keep]] = train.time[keep]
    return tracks, times


def _session_matches(features: CatalogFeatures, tracks: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per (session, position p): the candidate at p matched with the session's first track,
    and the time-weighted mean of its matches with the plays before p: shape (S, L, 12)."""
    safe = np.maximum(tracks, 0)
    sessions, length = tracks.shape
    first = features.pairs(np.repeat(safe[:, :1], length, axis=1), safe)
    weighted = np.zeros(first.shape, dtype=np.float32)
    total = np.zeros((sessions, length, 1), dtype=np.float32)
    valid = (tracks >= 0).astype(np.float32)
    for earlier in range(length - 1):
        weight = (times[:, earlier] * valid[:, earlier])[:, None, None]
        later = slice(earlier + 1, length)
        weighted[:, later] += weight * features.pairs(safe[:, earlier : earlier + 1], safe[:, later])
        total[:, later] += weight
    weighted /= np.maximum(total, 1e-6)
    return np.concatenate([first, weighted], axis=-1)


def _earlier_artist_plays(features: CatalogFeatures, tracks: np.ndarray) -> np.ndarray:
    artist = np.where(tracks >= 0, features.artist[np.maximum(tracks, 0)], -1)
    earlier = np.zeros(tracks.shape, dtype=np.float32)
    for position in range(1, tracks.shape[1]):
        earlier[:, position] = (artist[:, :position] == artist[:, position : position + 1]).sum(axis=1)
    return earlier * (tracks >= 0)


@dataclass(kw_only=True)
class SequentialModel(Model):
    """SASRec-style causal self-attention over the session's plays (catalog features + time
    played), trained to predict the time played of the next track; scored item-to-item lists
    (for `i2i`).

    Parameters
    ----------
    dim : int
        Width of the track representations and the attention layers.
    layers : int
        Causal self-attention layers.
    heads : int
        Attention heads per layer.
    length : int
        Longest session prefix read (later plays are left out of training).
    track_embedding : bool
        Add a track-id embedding to the catalog features of every track.
    epochs : int
        Passes over the training sessions.
    lr : float
        Adam's learning rate.
    batch : int
        Sessions per step.
    weight_decay : float
        Adam's L2 penalty.
    dropout : float
        Dropout inside the attention layers.
    size : int
        Length of each track's list.
    seed : int
        Seed of initialisation and batching.
    """

    name = "sequential"
    artifact_kind = "track"
    dim: int = 48
    layers: int = 2
    heads: int = 2
    length: int = 24
    track_embedding: bool = True
    epochs: int = 10
    lr: float = 0.005
    batch: int = 256
    weight_decay: float = 0.0
    dropout: float = 0.1
    size: int = 100
    seed: int = 42

    def _network(self, torch, features: CatalogFeatures):
        nn = torch.nn
        dim, length, use_ids = self.dim, self.length, self.track_embedding
        dense = torch.as_tensor(features.dense)
        artists = torch.as_tensor(features.artist)
        n_tracks, n_artists = features.size, int(features.artist.max()) + 1
        layer = nn.TransformerEncoderLayer(dim, self.heads, 2 * dim, dropout=self.dropout, batch_first=True)
        n_layers = self.layers

        class Network(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.artist = nn.Embedding(n_artists, dim)
                self.track = nn.Embedding(n_tracks, dim)
                self.meta = nn.Linear(dense.shape[1], dim)
                self.read = nn.Linear(2 * dim + 1, dim)  # a play: track, track × time, time
                self.position = nn.Embedding(length, dim)
                self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
                self.candidate = nn.Linear(dim, dim)
                self.bias = nn.Linear(dim, 1)
                self.match = nn.Linear(2 * len(MATCHES), 1)
                self.fatigue = nn.Parameter(torch.tensor(1.0))  # discount = sigmoid(fatigue)
                nn.init.normal_(self.artist.weight, std=0.1)
                nn.init.normal_(self.track.weight, std=0.01)
                nn.init.normal_(self.position.weight, std=0.01)

            def items(self, ids):
                found = self.meta(dense[ids]) + self.artist(artists[ids])
                return found + self.track(ids) if use_ids else found

            def states(self, tracks, times):
                """The session's state after each play (causal attention; -1 pads)."""
                valid = tracks >= 0
                item = self.items(tracks.clamp(min=0))
                played = times.unsqueeze(-1)
                steps = torch.arange(tracks.shape[1])
                inputs = self.read(torch.cat([item, item * played, played], dim=-1)) + self.position(steps)
                mask = torch.triu(torch.ones(len(steps), len(steps), dtype=torch.bool), diagonal=1)
                return self.encoder(inputs, mask=mask, src_key_padding_mask=~valid)

            @property
            def discount(self):
                return torch.sigmoid(self.fatigue)

        return Network()

    def fit(self, train: Interactions, catalog: Catalog) -> SequentialModel:
        torch = require_torch()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        features = CatalogFeatures(catalog)
        tracks, times = session_matrix(train, self.length)
        useful = (tracks[:, 1:] >= 0).any(axis=1)
        tracks, times = tracks[useful], times[useful]
        if not len(tracks):
            raise ValueError("sequential needs sessions of at least two tracks")
        matches = torch.as_tensor(_session_matches(features, tracks, times))
        earlier = torch.as_tensor(_earlier_artist_plays(features, tracks))
        tracks_t, times_t = torch.as_tensor(tracks), torch.as_tensor(times)
        network = self._network(torch, features)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        network.train()
        for _ in progress(self.epochs, f"{self.name}: epochs"):
            order = rng.permutation(len(tracks))
            for start in range(0, len(order), self.batch):
                rows = torch.as_tensor(order[start : start + self.batch])
                seq, played = tracks_t[rows], times_t[rows]
                width = int((seq >= 0).sum(dim=1).max())
                seq, played = seq[:, :width], played[:, :width]
                state = network.states(seq[:, :-1], played[:, :-1])
                target_tracks, target = seq[:, 1:], played[:, 1:]
                valid = (target_tracks >= 0).float()
                item = network.items(target_tracks.clamp(min=0))
                logits = ((state * network.candidate(item)).sum(-1) + network.bias(item).squeeze(-1)
                          + network.match(matches[rows, 1:width]).squeeze(-1))
                predicted = torch.sigmoid(logits) * network.discount ** earlier[rows, 1:width]
                loss = torch.nn.functional.binary_cross_entropy(predicted.clamp(1e-6, 1 - 1e-6), target,
                                                                reduction="none")
                loss = (loss * valid).sum() / valid.sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        network.eval()
        self.discount = float(network.discount.detach())
        weights = network.match.weight.detach().numpy().ravel()
        self.match_weights = {f"{kind}:{match}": round(float(w), 4) for kind, block in
                              (("first", weights[:6]), ("mean", weights[6:])) for match, w in zip(MATCHES, block)}
        self._lists(torch, network, features)
        return self

    def _lists(self, torch, network, features: CatalogFeatures, block: int = 500) -> None:
        """Every track's best next tracks for a session that so far holds just it, played in
        full, scored in blocks of anchors against the whole catalog."""
        n = features.size
        size = min(self.size, n - 1)
        weights = network.match.weight.detach().numpy().ravel()
        weights = weights[:6] + weights[6:]  # one play: the first track is also the mean
        offset = float(network.match.bias.detach())
        self.recommendations, self.scores = {}, {}
        with torch.no_grad():
            items = network.items(torch.arange(n))
            candidates = network.candidate(items).numpy()
            bias = network.bias(items).squeeze(-1).numpy() + offset
            for start in range(0, n, block):
                anchors = np.arange(start, min(n, start + block))
                ids = torch.as_tensor(anchors).unsqueeze(1)
                state = network.states(ids, torch.ones(ids.shape)).squeeze(1).numpy()
                logits = state @ candidates.T + bias + features.scored(anchors, weights)
                best, chosen = top_k_others(logits, anchors, size)
                chosen = chosen.astype(np.float64)
                probability = 1.0 / (1.0 + np.exp(-chosen))
                for row, anchor in enumerate(anchors.tolist()):
                    self.recommendations[anchor] = best[row].tolist()
                    self.scores[anchor] = probability[row].tolist()

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations

    def learned(self) -> dict:
        return {"discount": round(self.discount, 4), "match_weights": self.match_weights}

    def artifacts(self) -> dict[str, Lists]:
        return {"item2item.jsonl": Lists("track", self.recommendations, self.scores)}
