"""A model file's sha256, remembered between runs.

Hashing a 0.4-0.7 GB model takes about a second; the server names the file it answers with
by its hash (system_fingerprint), and starting again on the same file should not pay that
twice. Digests are kept in JISU_HOME/digests.json by path, with the file's size and
modification time: a file replaced or changed in place is hashed again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from jisu.config import jisu_home
from jisu.models.store import sha256_of

DIGESTS_FILE = "digests.json"


def file_sha256(path: Path, home: Path | None = None) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    book = (home or jisu_home()) / DIGESTS_FILE
    known = _read(book)
    entry = known.get(str(path))
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return entry["sha256"]
    digest = sha256_of(path)
    known[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    _write(book, known)
    return digest


def _read(book: Path) -> dict:
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: hash again and write it anew
        return {}
    return known if isinstance(known, dict) else {}


def _write(book: Path, known: dict) -> None:
    """Atomically (two servers starting at once each write a whole file); a home we cannot
    write to only means hashing again next time."""
    scratch = None
    try:
        book.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=book.parent, prefix=".digests-", delete=False) as scratch:
            json.dump(known, scratch, indent=1)
        os.replace(scratch.name, book)
    except OSError:
        if scratch is not None:
            Path(scratch.name).unlink(missing_ok=True)
