"""Contextual models (course weeks 6 and 9, and a student's homework), in PyTorch.

`contextual`: the time a listener plays a candidate track given the first track of the
session, sigmoid(context(start) · item(candidate) + bias(candidate)), fitted to time played.
Each track's list is its nearest items by that score (exact inner-product search), served by
the `contextual` recommender with the previous track as the context.

`contextual-user`: the same with a user embedding added to the context,
(context(start) + user(u)) · item(candidate); the homework's settings were dimension 64,
learning rate 0.05, batch 2048. Its per-user lists use the user's latest session start.
"""

from __future__ import annotations

import numpy as np

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.neural import batches, heard_by_user, require_torch, session_starts, top_k
from botify.world.model import Catalog


class Contextual(Model):
    name = "contextual"
    artifact_kind = "track"
    defaults = {"dim": 32, "epochs": 15, "lr": 0.01, "batch": 2048, "size": 100, "seed": 42}
    with_user = False

    def fit(self, train: Interactions, catalog: Catalog) -> Contextual:
        torch = require_torch()
        torch.manual_seed(self.params["seed"])
        rng = np.random.default_rng(self.params["seed"])
        n, dim = catalog.size, self.params["dim"]
        starts = session_starts(train)
        rows = train.position > 0
        users, user_rows = np.unique(train.user, return_inverse=True)
        context = torch.nn.Embedding(n, dim)
        item = torch.nn.Embedding(n, dim)
        bias = torch.nn.Embedding(n, 1)
        person = torch.nn.Embedding(len(users), dim)
        for table in (context, item, person):
            torch.nn.init.normal_(table.weight, std=0.1)
        torch.nn.init.zeros_(bias.weight)
        parameters = [*context.parameters(), *item.parameters(), *bias.parameters()]
        if self.with_user:
            parameters += list(person.parameters())
        optimizer = torch.optim.Adam(parameters, lr=self.params["lr"])
        start_t = torch.as_tensor(starts[rows])
        cand_t = torch.as_tensor(train.track[rows])
        user_t = torch.as_tensor(user_rows[rows])
        time_t = torch.as_tensor(train.time[rows], dtype=torch.float32)
        for _ in range(self.params["epochs"]):
            for index in batches(len(time_t), self.params["batch"], rng):
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
            items = np.hstack([item.weight.numpy(), bias.weight.numpy()])
            self.item_vectors = item.weight.numpy().copy()
            contexts = context.weight.numpy()
            people = person.weight.numpy()
        ones = np.ones((n, 1), dtype=np.float32)
        if not self.with_user:
            keys = np.unique(train.track)
            queries = np.hstack([contexts[keys], ones[keys]])
            found = top_k(queries, items, self.params["size"], [{int(k)} for k in keys])
            self.recommendations = dict(zip(keys.tolist(), found))
            return self
        latest_start = {}
        for user, start in zip(train.user.tolist(), starts.tolist()):
            latest_start[user] = start  # rows are ordered by session: the last one wins
        heard = heard_by_user(train)
        queries = np.vstack([np.append(contexts[latest_start[u]] + people[i], 1.0) for i, u in enumerate(users.tolist())])
        found = top_k(queries, items, self.params["size"], [heard[u] for u in users.tolist()])
        self.recommendations = dict(zip(users.tolist(), found))
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations


class ContextualUser(Contextual):
    name = "contextual-user"
    artifact_kind = "user"
    defaults = {**Contextual.defaults, "dim": 64, "lr": 0.05, "batch": 2048, "epochs": 30}
    with_user = True
