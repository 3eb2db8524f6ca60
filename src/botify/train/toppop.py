"""TopPop: the most listened tracks in the service's logs, as the course's JSON-list artifact."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson

from botify.analysis.engine import expand
from botify.errors import BotifyError
from botify.world.model import Catalog

TOP_SQL = """
WITH fields AS (
    SELECT CASE WHEN json_valid(line) THEN json_extract_string(line, ['$.message', '$.track', '$.time']) END AS f
    FROM read_csv($files, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false)
)
SELECT TRY_CAST(f[2] AS BIGINT) AS track, round(sum(TRY_CAST(f[3] AS DOUBLE)), 9) AS listened
FROM fields WHERE f[1] IN ('next', 'last')
GROUP BY track HAVING track IS NOT NULL AND listened > 0
ORDER BY listened DESC, track
"""


def top_tracks(logs: list[str | Path], n_tracks: int, size: int = 1000) -> list[int]:
    """Catalog tracks ordered by total time listened in the logs (ties by id), at most `size`."""
    files = expand(logs)
    try:
        rows = duckdb.execute(TOP_SQL, {"files": files}).fetchall()
    except duckdb.Error as error:
        raise BotifyError(f"cannot read the logs: {error}") from error
    return [int(track) for track, _ in rows if 0 <= track < n_tracks][:size]


def train_toppop(logs: list[str | Path], catalog_path: Path, out: Path, size: int = 1000) -> list[int]:
    """Write the top tracks to `out` (a JSON list, read by the `top_pop` recommender)."""
    catalog = Catalog.load(catalog_path)
    top = top_tracks(logs, catalog.size, size)
    if not top:
        raise BotifyError("the logs hold no listened tracks of this catalog")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(top))
    return top

