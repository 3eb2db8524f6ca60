"""LightGCN: graph collaborative filtering (course week 7), as a PyTorch module.

Users and tracks are nodes of the bipartite graph of liked plays (time at least `min_time`);
embeddings are smoothed over `layers` rounds of symmetric-normalised neighbour averaging and
the layers are averaged. Trained with the BPR loss on (user, liked track, random track).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from botify.train.base import Model, progress
from botify.train.dataset import Interactions
from botify.train.neural import batches, heard_by_user, require_torch, top_k
from botify.world.model import Catalog


@dataclass(kw_only=True)
class LightGCN(Model):
    """PyTorch graph collaborative filtering with the BPR loss (for `indexed`; its item
    embeddings also give item-to-item lists for `i2i`).

    Parameters
    ----------
    dim : int
        Embedding size.
    layers : int
        Rounds of neighbour averaging.
    epochs : int
        Passes over the liked plays.
    lr : float
        Adam's learning rate.
    batch : int
        Liked plays per step.
    weight_decay : float
        L2 penalty on the embeddings of each batch.
    min_time : float
        Least time played for a play to count as liked.
    size : int
        Length of each list.
    seed : int
        Seed of initialisation and sampling.
    """

    name = "lightgcn"
    artifact_kind = "user"
    dim: int = 32
    layers: int = 2
    epochs: int = 30
    lr: float = 0.01
    batch: int = 2048
    weight_decay: float = 1e-4
    min_time: float = 0.5
    size: int = 100
    seed: int = 42

    def fit(self, train: Interactions, catalog: Catalog) -> LightGCN:
        torch = require_torch()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        liked = train.take(train.time >= self.min_time)
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
        embedding = torch.nn.Embedding(n_users + n_items, self.dim)
        torch.nn.init.normal_(embedding.weight, std=0.1)
        optimizer = torch.optim.Adam(embedding.parameters(), lr=self.lr)

        def smoothed():
            layer = embedding.weight
            total = layer
            for _ in range(self.layers):
                layer = torch.sparse.mm(propagate, layer)
                total = total + layer
            return total / (self.layers + 1)

        pair_users = torch.as_tensor(user_rows)
        pair_items = torch.as_tensor(liked.track + n_users)
        for _ in progress(self.epochs, f"{self.name}: epochs"):
            for index in batches(liked.size, self.batch, rng):
                index = torch.as_tensor(index)
                final = smoothed()
                negatives = torch.as_tensor(rng.integers(0, n_items, len(index)) + n_users)
                u, p, q = pair_users[index], pair_items[index], negatives
                difference = (final[u] * final[p]).sum(-1) - (final[u] * final[q]).sum(-1)
                penalty = embedding.weight[u].pow(2).sum() + embedding.weight[p].pow(2).sum() + embedding.weight[q].pow(2).sum()
                loss = -torch.nn.functional.logsigmoid(difference).mean() + self.weight_decay * penalty / len(index)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            final = smoothed().numpy()
        heard = heard_by_user(train)
        self.item_vectors = final[n_users:]
        found = top_k(final[:n_users], final[n_users:], self.size, [heard.get(u, set()) for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
