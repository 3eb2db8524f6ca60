"""Matrix factorisation on implicit feedback with `implicit` (course week 3, part 2).

ALS or BPR over the user × track matrix of time played. Hyperparameters are searched with
Optuna on a validation split (the latest sessions of the training part); each trial trains
in rounds of `round_iterations` and stops early when precision@k on validation stops
improving, reporting every round so that Optuna can prune weak trials. The best setting is
then refitted on the whole training part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from botify.errors import BotifyError
from botify.train.base import Model, steps
from botify.train.dataset import Interactions
from botify.train.evaluate import evaluate_lists
from botify.train.matrix import user_track_matrix
from botify.world.model import Catalog


@dataclass(kw_only=True)
class MatrixFactorization(Model):
    """Matrix factorisation with implicit (ALS or BPR), tuned with Optuna (for `indexed`; its
    item factors also give item-to-item lists for `i2i`).

    Parameters
    ----------
    algorithm : str
        "als" (time-weighted alternating least squares) or "bpr" (Bayesian personalised ranking).
    trials : int
        Optuna trials of the hyperparameter search.
    k : int
        Cut-off of the validation precision@k that the search maximises.
    size : int
        Length of each user's and each track's list.
    max_rounds : int
        Most training rounds per trial (early stopping may end sooner).
    round_iterations : int | None
        Iterations per round (default: 5 for ALS, 2 for ALS on Spark, 50 for BPR).
    patience : int
        Rounds without improvement before a trial stops.
    seed : int
        Seed of the search and of the factors.
    factors : int | None
        Fix the number of factors instead of searching it.
    regularization : float | None
        Fix the regularisation instead of searching it.
    learning_rate : float | None
        Fix BPR's learning rate instead of searching it.
    min_time : float | None
        Least time played for a play to count (default: 0 for ALS, 0.5 for BPR).
    """

    name = "mf"
    artifact_kind = "user"
    algorithm: Literal["als", "bpr"] = "als"
    trials: int = 8
    k: int = 10
    size: int = 100
    max_rounds: int = 6
    round_iterations: int | None = None
    patience: int = 2
    seed: int = 42
    factors: int | None = None
    regularization: float | None = None
    learning_rate: float | None = None
    min_time: float | None = None

    def _model(self, factors: int, regularization: float, learning_rate: float):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit warns, and slows down, with a BLAS thread pool
            return self._new_model(factors, regularization, learning_rate)

    def _new_model(self, factors: int, regularization: float, learning_rate: float):
        """ALS converges in a few sweeps per round; BPR's SGD needs many more epochs per round."""
        if self.algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(factors=factors, regularization=regularization,
                                           iterations=self.round_iterations or 5,
                                           random_state=self.seed, num_threads=1)
        if self.algorithm == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            return BayesianPersonalizedRanking(factors=factors, regularization=regularization,
                                               learning_rate=learning_rate,
                                               iterations=self.round_iterations or 50,
                                               random_state=self.seed, num_threads=1)
        raise ValueError(f"mf algorithm must be 'als' or 'bpr', got {self.algorithm!r}")

    def _recommend(self, model, matrix, users: np.ndarray, rows: np.ndarray, size: int) -> dict[int, list[int]]:
        ids, _ = model.recommend(rows, matrix[rows], N=size, filter_already_liked_items=True)
        return {int(user): [int(t) for t in row if t >= 0] for user, row in zip(users, ids)}

    def _train(self, matrix, users, settings: dict, validation: Interactions | None, n_tracks: int, report=None,
               rounds: int | None = None):
        """Train in rounds; with validation data, stop when precision@k stops improving."""
        model = self._model(**settings)
        best, best_round, rounds_done = -1.0, 0, 0
        val_rows = None
        if validation is not None:
            index = {int(u): i for i, u in enumerate(users)}
            val_users = np.array(sorted({int(u) for u in validation.user} & set(index)))
            val_rows = np.array([index[u] for u in val_users.tolist()])
        from threadpoolctl import threadpool_limits

        for round_number in range(rounds or self.max_rounds):
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False)
            rounds_done = round_number + 1
            if val_rows is None or not len(val_rows):
                continue
            lists = self._recommend(model, matrix, val_users, val_rows, self.k)
            score = evaluate_lists("user", lists, validation, n_tracks, self.k)[f"precision@{self.k}"]
            if report is not None:
                report(score, round_number)
            if score > best:
                best, best_round = score, round_number
            elif round_number - best_round >= self.patience:
                break
        return model, best, rounds_done

    def _positives(self, interactions: Interactions) -> Interactions:
        """BPR samples every stored pair as a positive, so it sees only tracks played at least
        `min_time` (default 0.5); ALS weighs every play by its time (default 0)."""
        default = 0.5 if self.algorithm == "bpr" else 0.0
        threshold = default if self.min_time is None else self.min_time
        return interactions.take(interactions.time >= threshold) if threshold > 0 else interactions

    def fit(self, train: Interactions, catalog: Catalog) -> MatrixFactorization:
        try:
            import implicit  # noqa: F401
            import optuna
        except ImportError as error:
            raise BotifyError(f"mf needs the training extras: pip install 'botify[train]' ({error})") from error

        fitting, validation = train.split_by_time(0.2)
        matrix, users = user_track_matrix(self._positives(fitting), catalog.size)
        fixed = {name: getattr(self, name) for name in ("factors", "regularization", "learning_rate")
                 if getattr(self, name) is not None}

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
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
        with steps(self.trials, f"{self.name}: trials") as advance:
            study.optimize(objective, n_trials=self.trials, callbacks=[lambda *_: advance(1)])
        chosen = {"factors": 64, "regularization": 0.01, "learning_rate": 0.01, **fixed,
                  **{key: value for key, value in study.best_params.items()}}
        self.search = {"best_validation_precision": study.best_value, "chosen": chosen,
                       "rounds": study.best_trial.user_attrs.get("rounds"), "trials": len(study.trials)}

        full, full_users = user_track_matrix(self._positives(train), catalog.size)
        model, _, _ = self._train(full, full_users, chosen, None, catalog.size,
                                  rounds=study.best_trial.user_attrs.get("rounds", 1))
        self.item_vectors = np.asarray(model.item_factors, dtype=np.float32)
        self.recommendations = self._recommend(model, full, full_users, np.arange(len(full_users)), self.size)
        return self

    def fit_spark(self, spark, train: Interactions, catalog: Catalog) -> MatrixFactorization:
        """Spark MLlib's ALS instead of `implicit` (`--engine spark`): fixed factors (default 64),
        regularisation (default 0.01) and max_rounds × round_iterations sweeps, no search."""
        if self.algorithm != "als":
            raise BotifyError("mf --engine spark trains ALS (Spark MLlib has no BPR): use algorithm=als")
        from botify.train.spark_als import fit_als

        rank, regularization = self.factors or 64, self.regularization or 0.01
        iterations = self.max_rounds * (self.round_iterations or 2)
        self.item_vectors, self.recommendations = fit_als(
            spark, self._positives(train), catalog.size, rank=rank, regularization=regularization,
            iterations=iterations, seed=self.seed, size=self.size)
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
