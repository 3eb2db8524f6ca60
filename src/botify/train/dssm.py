"""DSSM: a two-tower network trained with a triplet loss (course week 5).

The item tower reads only catalog metadata (artist, genres, mood, decade, country); the user
tower reads the mean item features of the user's liked history (plays of at least
`min_time`). Training pulls a user towards a liked track and away from a random one by a
margin in cosine similarity. Lists: each user's nearest unheard items.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.neural import batches, heard_by_user, require_torch, top_k
from botify.world.model import Catalog


def item_features(catalog: Catalog) -> np.ndarray:
    """One-hot/multi-hot catalog metadata per track: genres, mood, decade, country."""
    columns: dict[str, int] = {}
    rows, cols = [], []
    for record in catalog.records:
        values = [f"genre:{g}" for g in record.get("genres", [])]
        values += [f"mood:{record.get('mood')}", f"decade:{int(record.get('year', 0)) // 10}",
                   f"country:{record.get('artist_country')}"]
        for value in values:
            rows.append(record["track"])
            cols.append(columns.setdefault(value, len(columns)))
    matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(catalog.size, len(columns)))
    return matrix.toarray()


class DSSM(Model):
    name = "dssm"
    artifact_kind = "user"
    defaults = {"dim": 32, "hidden": 64, "epochs": 20, "lr": 0.01, "batch": 1024, "margin": 0.3,
                "min_time": 0.5, "size": 100, "seed": 42}

    def fit(self, train: Interactions, catalog: Catalog) -> DSSM:
        torch = require_torch()
        nn = torch.nn
        torch.manual_seed(self.params["seed"])
        rng = np.random.default_rng(self.params["seed"])
        dim, hidden = self.params["dim"], self.params["hidden"]
        features = torch.as_tensor(item_features(catalog))
        artists = torch.as_tensor(catalog.artist_codes.astype(np.int64))
        liked = train.take(train.time >= self.params["min_time"])
        users, user_rows = np.unique(liked.user, return_inverse=True)
        history = sparse.csr_matrix((np.ones(liked.size, np.float32), (user_rows, liked.track)),
                                    shape=(len(users), catalog.size))
        history = sparse.diags(1.0 / np.maximum(np.asarray(history.sum(axis=1)).ravel(), 1)) @ history
        history = history.tocoo()
        history_t = torch.sparse_coo_tensor(np.vstack([history.row, history.col]), history.data.astype(np.float32),
                                            history.shape, check_invariants=True).coalesce()
        artist_embedding = nn.Embedding(len(catalog.artist_names), 16)
        width = features.shape[1] + 16
        item_tower = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        user_tower = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        parameters = [*artist_embedding.parameters(), *item_tower.parameters(), *user_tower.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=self.params["lr"])

        def encode() -> tuple:
            inputs = torch.cat([features, artist_embedding(artists)], dim=1)
            items = nn.functional.normalize(item_tower(inputs), dim=1)
            people = nn.functional.normalize(user_tower(torch.sparse.mm(history_t, inputs)), dim=1)
            return items, people

        pair_users = torch.as_tensor(user_rows)
        pair_items = torch.as_tensor(liked.track)
        for _ in range(self.params["epochs"]):
            for index in batches(liked.size, self.params["batch"], rng):
                items, people = encode()
                index = torch.as_tensor(index)
                negatives = torch.as_tensor(rng.integers(0, catalog.size, len(index)))
                user_vectors = people[pair_users[index]]
                positive = (user_vectors * items[pair_items[index]]).sum(-1)
                negative = (user_vectors * items[negatives]).sum(-1)
                loss = torch.relu(self.params["margin"] - positive + negative).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            items, people = encode()
        heard = heard_by_user(train)
        self.item_vectors = items.numpy()
        found = top_k(people.numpy(), items.numpy(), self.params["size"], [heard.get(u, set()) for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
