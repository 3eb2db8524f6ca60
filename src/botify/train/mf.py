"""Matrix factorisation on implicit feedback with `implicit` (course week 3, part 2).

ALS or BPR over the user × track matrix of time played. Hyperparameters are searched with
Optuna on a validation split (the latest sessions of the training part); each trial trains
in rounds of `round_iterations` and stops early when precision@k on validation stops
improving, reporting every round so that Optuna can prune weak trials. The best setting is
then refitted on the whole training part.
"""

from __future__ import annotations

import numpy as np

from botify.errors import BotifyError
from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.evaluate import evaluate_lists
from botify.train.matrix import user_track_matrix
from botify.world.model import Catalog


class MatrixFactorization(Model):
    name = "mf"
    artifact_kind = "user"
    defaults = {
        "algorithm": "als", "trials": 8, "k": 10, "size": 100, "max_rounds": 6, "round_iterations": None,
        "patience": 2, "seed": 42, "factors": None, "regularization": None, "learning_rate": None,
        "min_time": None,
    }

    def _model(self, factors: int, regularization: float, learning_rate: float):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit warns, and slows down, with a BLAS thread pool
            return self._new_model(factors, regularization, learning_rate)

    def _new_model(self, factors: int, regularization: float, learning_rate: float):
        """ALS converges in a few sweeps per round; BPR's SGD needs many more epochs per round."""
        if self.params["algorithm"] == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(factors=factors, regularization=regularization,
                                           iterations=self.params["round_iterations"] or 5,
                                           random_state=self.params["seed"], num_threads=1)
        if self.params["algorithm"] == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            return BayesianPersonalizedRanking(factors=factors, regularization=regularization,
                                               learning_rate=learning_rate,
                                               iterations=self.params["round_iterations"] or 50,
                                               random_state=self.params["seed"], num_threads=1)
        raise ValueError(f"mf algorithm must be 'als' or 'bpr', got {self.params['algorithm']!r}")

    def _recommend(self, model, matrix, users: np.ndarray, rows: np.ndarray, size: int) -> dict[int, list[int]]:
        ids, _ = model.recommend(rows, matrix[rows], N=size, filter_already_liked_items=True)
        return {int(user): [int(t) for t in row if t >= 0] for user, row in zip(users, ids)}

    def _train(self, matrix, users, settings: dict, validation: Interactions | None, n_tracks: int, report=None):
        """Train in rounds; with validation data, stop when precision@k stops improving."""
        model = self._model(**settings)
        best, best_round, rounds_done = -1.0, 0, 0
        val_rows = None
        if validation is not None:
            index = {int(u): i for i, u in enumerate(users)}
            val_users = np.array(sorted({int(u) for u in validation.user} & set(index)))
            val_rows = np.array([index[u] for u in val_users.tolist()])
        from threadpoolctl import threadpool_limits

        for round_number in range(self.params["max_rounds"]):
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False)
            rounds_done = round_number + 1
            if val_rows is None or not len(val_rows):
                continue
            lists = self._recommend(model, matrix, val_users, val_rows, self.params["k"])
            score = evaluate_lists("user", lists, validation, n_tracks, self.params["k"])[f"precision@{self.params['k']}"]
            if report is not None:
                report(score, round_number)
            if score > best:
                best, best_round = score, round_number
            elif round_number - best_round >= self.params["patience"]:
                break
        return model, best, rounds_done

    def _positives(self, interactions: Interactions) -> Interactions:
        """BPR samples every stored pair as a positive, so it sees only tracks played at least
        `min_time` (default 0.5); ALS weighs every play by its time (default 0)."""
        default = 0.5 if self.params["algorithm"] == "bpr" else 0.0
        threshold = default if self.params["min_time"] is None else self.params["min_time"]
        return interactions.take(interactions.time >= threshold) if threshold > 0 else interactions

    def fit(self, train: Interactions, catalog: Catalog) -> MatrixFactorization:
        try:
            import implicit  # noqa: F401
            import optuna
        except ImportError as error:
            raise BotifyError(f"mf needs the training extras: pip install 'botify[train]' ({error})") from error

        fitting, validation = train.split_by_time(0.2)
        matrix, users = user_track_matrix(self._positives(fitting), catalog.size)
        fixed = {name: self.params[name] for name in ("factors", "regularization", "learning_rate")
                 if self.params[name] is not None}

        def objective(trial: optuna.Trial) -> float:
            settings = {
                "factors": fixed.get("factors") or trial.suggest_categorical("factors", [16, 32, 64, 128]),
                "regularization": fixed.get("regularization") or trial.suggest_float("regularization", 1e-4, 1.0, log=True),
                "learning_rate": fixed.get("learning_rate") or trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
            }

            def report(score: float, step: int) -> None:
                trial.report(score, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            _, best, rounds = self._train(matrix, users, settings, validation, catalog.size, report)
            trial.set_user_attr("rounds", rounds)
            return best

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.params["seed"]),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
        study.optimize(objective, n_trials=self.params["trials"])
        chosen = {"factors": 64, "regularization": 0.01, "learning_rate": 0.01, **fixed,
                  **{key: value for key, value in study.best_params.items()}}
        self.search = {"best_validation_precision": study.best_value, "chosen": chosen,
                       "rounds": study.best_trial.user_attrs.get("rounds"), "trials": len(study.trials)}
        self.params = {**self.params, **chosen, "max_rounds": study.best_trial.user_attrs.get("rounds", 1)}

        full, full_users = user_track_matrix(self._positives(train), catalog.size)
        model, _, _ = self._train(full, full_users, chosen, None, catalog.size)
        self.recommendations = self._recommend(model, full, full_users, np.arange(len(full_users)), self.params["size"])
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
