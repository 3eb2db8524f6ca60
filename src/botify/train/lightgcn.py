"""LightGCN: graph collaborative filtering (course week 7), as a PyTorch module.

Users and tracks are nodes of the bipartite graph of liked plays (time at least `min_time`);
embeddings are smoothed over `layers` rounds of symmetric-normalised neighbour averaging and
the layers are averaged. Trained with the BPR loss on (user, liked track, random track).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.neural import batches, heard_by_user, require_torch, top_k
from botify.world.model import Catalog


class LightGCN(Model):
    name = "lightgcn"
    artifact_kind = "user"
    defaults = {"dim": 32, "layers": 2, "epochs": 30, "lr": 0.01, "batch": 2048, "weight_decay": 1e-4,
                "min_time": 0.5, "size": 100, "seed": 42}

    def fit(self, train: Interactions, catalog: Catalog) -> LightGCN:
        torch = require_torch()
        torch.manual_seed(self.params["seed"])
        rng = np.random.default_rng(self.params["seed"])
        liked = train.take(train.time >= self.params["min_time"])
        users, user_rows = np.unique(liked.user, return_inverse=True)
        n_users, n_items = len(users), catalog.size
        graph = sparse.csr_matrix((np.ones(liked.size, np.float32), (user_rows, liked.track)), shape=(n_users, n_items))
        graph.data[:] = 1.0
        adjacency = sparse.bmat([[None, graph], [graph.T, None]]).tocsr()
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        scale = sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1)))
        normalised = (scale @ adjacency @ scale).tocoo()
        propagate = torch.sparse_coo_tensor(np.vstack([normalised.row, normalised.col]),
                                            normalised.data.astype(np.float32), normalised.shape,
                                            check_invariants=True).coalesce()
        embedding = torch.nn.Embedding(n_users + n_items, self.params["dim"])
        torch.nn.init.normal_(embedding.weight, std=0.1)
        optimizer = torch.optim.Adam(embedding.parameters(), lr=self.params["lr"])

        def smoothed():
            layer = embedding.weight
            total = layer
            for _ in range(self.params["layers"]):
                layer = torch.sparse.mm(propagate, layer)
                total = total + layer
            return total / (self.params["layers"] + 1)

        pair_users = torch.as_tensor(user_rows)
        pair_items = torch.as_tensor(liked.track + n_users)
        for _ in range(self.params["epochs"]):
            for index in batches(liked.size, self.params["batch"], rng):
                index = torch.as_tensor(index)
                final = smoothed()
                negatives = torch.as_tensor(rng.integers(0, n_items, len(index)) + n_users)
                u, p, q = pair_users[index], pair_items[index], negatives
                difference = (final[u] * final[p]).sum(-1) - (final[u] * final[q]).sum(-1)
                penalty = embedding.weight[u].pow(2).sum() + embedding.weight[p].pow(2).sum() + embedding.weight[q].pow(2).sum()
                loss = -torch.nn.functional.logsigmoid(difference).mean() + self.params["weight_decay"] * penalty / len(index)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            final = smoothed().numpy()
        heard = heard_by_user(train)
        self.item_vectors = final[n_users:]
        found = top_k(final[:n_users], final[n_users:], self.params["size"], [heard.get(u, set()) for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
