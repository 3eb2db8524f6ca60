"""ALS in Spark MLlib: the course's Spark path for `botify train mf --engine spark`.

The factorisation runs where Spark runs (a cluster, or local[*]); what comes back to the driver
is what the artifacts need: the item factors (for item-to-item lists) and each user's top
tracks not yet played, ranked on Spark too. No hyperparameter search here: the factors,
regularisation and iterations are the model's parameters (or the local search's defaults).
"""

from __future__ import annotations

import numpy as np

from botify.train.dataset import Interactions


def fit_als(spark, interactions: Interactions, n_tracks: int, *, rank: int, regularization: float,
            iterations: int, seed: int, size: int) -> tuple[np.ndarray, dict[int, list[int]]]:
    """(item factors, row i = track i; per user, `size` unplayed tracks by score, best first)."""
    import pyarrow as pa
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    table = pa.table({"user": interactions.user.astype(np.int32), "track": interactions.track.astype(np.int32),
                      "time": interactions.time.astype(np.float64)})
    plays = (spark.createDataFrame(table).groupBy("user", "track").agg(F.sum("time").alias("rating"))
             .where(F.col("rating") > 0).cache())
    als = ALS(rank=rank, maxIter=iterations, regParam=regularization, implicitPrefs=True, userCol="user",
              itemCol="track", ratingCol="rating", coldStartStrategy="drop", seed=seed)
    model = als.fit(plays)
    vectors = np.zeros((n_tracks, rank), dtype=np.float32)
    factors = model.itemFactors.toArrow()
    ids = factors.column("id").to_numpy()
    vectors[ids] = np.asarray(factors.column("features").to_pylist(), dtype=np.float32).reshape(len(ids), rank)
    # Enough candidates that `size` unplayed ones remain for everyone: played ones are dropped on Spark.
    most_played = plays.groupBy("user").count().agg(F.max("count")).first()[0] or 0
    candidates = (model.recommendForAllUsers(min(n_tracks, size + most_played))
                  .select("user", F.posexplode("recommendations").alias("rank", "item"))
                  .select("user", "rank", F.col("item.track").alias("track"))
                  .join(plays.select("user", "track"), ["user", "track"], "left_anti"))
    order = Window.partitionBy("user").orderBy("rank")
    lists = (candidates.withColumn("place", F.row_number().over(order)).where(F.col("place") <= size)
             .groupBy("user").agg(F.sort_array(F.collect_list(F.struct("place", "track"))).alias("ranked"))
             .select("user", F.col("ranked.track").alias("tracks")).toArrow())
    users, tracks = lists.column("user").to_pylist(), lists.column("tracks").to_pylist()
    plays.unpersist()
    return vectors, {int(user): [int(t) for t in row] for user, row in zip(users, tracks)}
