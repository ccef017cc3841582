"""What files hold, by their bytes: one sha256 per file, computed once and cached by (device, inode, size, mtime,
ctime), so a resumed grid can tell data replaced under the same names and sizes (a run id follows names, sizes and
labels only, so that the ids of existing stores hold: `spec.RunSpec.content`).

The cache is a SQLite file in the cache folder; any write to a file changes its ctime, so a file rewritten in place
with its old size and mtime restored is hashed again.  A file changed in the last RACY_S seconds is not cached: its
next change may fall in the same tick of the file system's clock and leave every stamp as it was.  A cache folder
that cannot be written only costs time: every file is hashed again (a warning says so once).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from fairfacebench.settings import default_cache_dir

log = logging.getLogger("fairfacebench")

DATABASE = "file-digests.sqlite"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS digests (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, "
    "sha256 TEXT, PRIMARY KEY (dev, ino))"
)
RACY_S = 2.0
_warned: list[bool] = []  # whether the cache's warning was given


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(paths: Sequence[str | Path], cache_dir: Path | None = None) -> list[str | None]:
    """The sha256 of each file's bytes (None: missing or unreadable), from the cache when the file is unchanged."""
    connection = _open(Path(cache_dir or default_cache_dir()))
    found: list[tuple[int, ...]] = []
    out: list[str | None] = []
    try:
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            cached = _lookup(connection, stamp)
            if cached is None:
                try:
                    cached = file_sha256(path)
                except OSError:
                    out.append(None)
                    continue
                if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S:
                    found.append((*stamp, cached))
            out.append(cached)
        _store(connection, found)
    finally:
        if connection is not None:
            connection.close()
    return out


def combined(lines: Iterable[str]) -> str:
    """One short digest of lines (file names with their digests, class names, ...)."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()[:16]


def folder_content(root: Path) -> str:
    """A digest of the relative path and bytes of every file under `root` (not its location)."""
    files = sorted(
        os.path.relpath(os.path.join(folder, name), root) for folder, _, names in os.walk(root) for name in names
    )
    digests = file_digests([os.path.join(root, f) for f in files])
    return combined(f"{Path(f).as_posix()}\t{d}" for f, d in zip(files, digests))


def _open(cache_dir: Path) -> sqlite3.Connection | None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(cache_dir / DATABASE, timeout=60)
        connection.execute(SCHEMA)
        return connection
    except (OSError, sqlite3.Error) as exc:
        _warn_once(exc)
        return None


def _lookup(connection: sqlite3.Connection | None, stamp: tuple[int, ...]) -> str | None:
    if connection is None:
        return None
    row = connection.execute(
        "SELECT size, mtime_ns, ctime_ns, sha256 FROM digests WHERE dev = ? AND ino = ?", stamp[:2]
    ).fetchone()
    return row[3] if row is not None and tuple(row[:3]) == stamp[2:] else None


def _store(connection: sqlite3.Connection | None, rows: list[tuple[int, ...]]) -> None:
    if connection is None or not rows:
        return
    try:
        with connection:
            connection.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", rows)
    except sqlite3.Error as exc:  # a read-only cache folder: the digests are right, only not kept
        _warn_once(exc)


def _warn_once(exc: Exception) -> None:
    if not _warned:
        _warned.append(True)
        log.warning("file digests cannot be cached (%s): every file is hashed again next time", exc)
