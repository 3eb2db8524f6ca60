"""DSSM: a two-tower network trained with a triplet loss (course week 5).

The item tower reads only catalog metadata (artist, genres, mood, decade, country); the user
tower reads the mean item features of the user's liked history (plays of at least
`min_time`). Training pulls a user towards a liked track and away from a random one by a
margin in cosine similarity. Each step encodes only its batch's users and items (the liked
and the sampled tracks), not the whole catalog. Lists: each user's nearest unheard items,
and (item tower) each track's nearest tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from botify.train.base import Model, progress
from botify.train.dataset import Interactions
from botify.train.features import CatalogFeatures
from botify.train.neural import batches, heard_by_user, require_torch, top_k
from botify.world.model import Catalog


@dataclass(kw_only=True)
class DSSM(Model):
    """PyTorch two-tower network on catalog metadata and listen history, triplet loss (for
    `indexed`; its item tower also gives item-to-item lists for `i2i`).

    Parameters
    ----------
    dim : int
        Size of the towers' output vectors.
    hidden : int
        Width of each tower's hidden layer.
    epochs : int
        Passes over the liked plays.
    lr : float
        Adam's learning rate.
    batch : int
        Liked plays per step.
    margin : float
        Triplet margin in cosine similarity.
    min_time : float
        Least time played for a play to count as liked.
    size : int
        Length of each list.
    seed : int
        Seed of initialisation and sampling.
    """

    name = "dssm"
    artifact_kind = "user"
    dim: int = 32
    hidden: int = 64
    epochs: int = 20
    lr: float = 0.01
    batch: int = 1024
    margin: float = 0.3
    min_time: float = 0.5
    size: int = 100
    seed: int = 42

    def fit(self, train: Interactions, catalog: Catalog) -> DSSM:
        torch = require_torch()
        nn = torch.nn
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        dim, hidden = self.dim, self.hidden
        features = torch.as_tensor(CatalogFeatures(catalog).dense)
        artists = torch.as_tensor(catalog.artist_codes.astype(np.int64))
        liked = train.take(train.time >= self.min_time)
        users, user_rows = np.unique(liked.user, return_inverse=True)
        history = sparse.csr_matrix((np.ones(liked.size, np.float32), (user_rows, liked.track)),
                                    shape=(len(users), catalog.size))
        history = (sparse.diags(1.0 / np.maximum(np.asarray(history.sum(axis=1)).ravel(), 1)) @ history).tocsr()
        artist_embedding = nn.Embedding(len(catalog.artist_names), 16)
        width = features.shape[1] + 16
        item_tower = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        user_tower = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        parameters = [*artist_embedding.parameters(), *item_tower.parameters(), *user_tower.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=self.lr)

        def inputs(ids):
            return torch.cat([features[ids], artist_embedding(artists[ids])], dim=1)

        def encode_items(ids):
            return nn.functional.normalize(item_tower(inputs(ids)), dim=1)

        def encode_users(rows: np.ndarray):
            """The user tower over the mean inputs of the given users' liked tracks only."""
            block = history[rows]
            used, columns = np.unique(block.indices, return_inverse=True)
            coo = sparse.csr_matrix((block.data, columns, block.indptr), shape=(len(rows), len(used))).tocoo()
            weights = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data.astype(np.float32), coo.shape,
                                              check_invariants=False)
            return nn.functional.normalize(user_tower(torch.sparse.mm(weights, inputs(torch.as_tensor(used)))), dim=1)

        for _ in progress(self.epochs, f"{self.name}: epochs"):
            for index in batches(liked.size, self.batch, rng):
                # Only this batch's users and items go through the towers, not the whole catalog.
                batch_users, user_index = np.unique(user_rows[index], return_inverse=True)
                user_vectors = encode_users(batch_users)[torch.as_tensor(user_index)]
                negatives = rng.integers(0, catalog.size, len(index))
                positive = (user_vectors * encode_items(torch.as_tensor(liked.track[index]))).sum(-1)
                negative = (user_vectors * encode_items(torch.as_tensor(negatives))).sum(-1)
                loss = torch.relu(self.margin - positive + negative).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            items = encode_items(torch.arange(catalog.size))
            people = torch.cat([encode_users(np.arange(start, min(len(users), start + 4096)))
                                for start in range(0, len(users), 4096)])
        heard = heard_by_user(train)
        self.item_vectors = items.numpy()
        found = top_k(people.numpy(), items.numpy(), self.size, [heard.get(u, set()) for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
