"""Image files: content hashes (by path, size, mtime) and brain-intensity statistics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from gliocore.store.rows import _now


@dataclass(frozen=True)
class ImageRecord:
    path: str
    sha256: str
    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None


class ImagesMixin:
    """Image files: content hashes (by path, size, mtime) and brain-intensity statistics.

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

    def cached_image_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The stored SHA-256 of a file whose size and mtime are unchanged, else None."""
        return self.cached_file_hashes([(path, size, mtime_ns)]).get(path)

    def cached_file_hashes(self, files: Sequence[tuple[str, int, int]]) -> dict[str, str]:
        """Stored SHA-256 of every file whose size and mtime are unchanged, in one query.

        Parameters
        ----------
        files : sequence of (path, size_bytes, mtime_ns)

        Returns
        -------
        dict path -> sha256, for the files whose stored size and mtime match.
        """
        files = list(files)
        if not files:
            return {}
        df = pd.DataFrame(files, columns=["path", "size_bytes", "mtime_ns"])
        with self.read() as con:
            con.register("_wanted", df)
            rows = con.execute("""SELECT i.path, i.sha256 FROM images i JOIN _wanted w
                                  ON i.path = w.path AND i.size_bytes = w.size_bytes
                                  AND i.mtime_ns = w.mtime_ns""").fetchall()
        return dict(rows)

    def put_image_hashes(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, sha256) rows (one statement for all)."""
        rows = list(rows)
        if not rows:
            return
        df = pd.DataFrame(rows, columns=["path", "size_bytes", "mtime_ns", "sha256"])
        df = df.drop_duplicates("path", keep="last")
        df["hashed_at"] = _now()
        with self.transaction() as con:
            con.register("_hashes", df)
            con.execute("""INSERT INTO images (path, size_bytes, mtime_ns, sha256, hashed_at)
                           SELECT path, size_bytes, mtime_ns, sha256, hashed_at FROM _hashes
                           ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                             mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                             hashed_at = excluded.hashed_at""")
            con.unregister("_hashes")

    def image_stats(self, cohort_id: str) -> pd.DataFrame:
        """Per subject and sequence: brain intensity statistics (raw), for the data check."""
        return self._df("""
            SELECT si.subject_id, si.sequence, i.brain_mean, i.brain_std, i.brain_median,
                   i.brain_p01, i.brain_p99, i.shape, i.spacing
            FROM subject_images si JOIN images i USING (path)
            WHERE si.cohort_id = ? AND i.brain_mean IS NOT NULL
            ORDER BY si.subject_id, si.sequence""", [cohort_id])

