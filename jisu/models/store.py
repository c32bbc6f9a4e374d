"""The model cache under JISU_HOME: verified files only, written atomically.

Downloads land in `partial/` (where they can resume); a file moves into `models/` with one
`os.replace` only after its size and sha256 match, so a crash or Ctrl-C never leaves a
half-written model where jisu would load it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from jisu.types import ModelError

GGUF_MAGIC = b"GGUF"


def sha256_of(path: Path, chunk_size: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path) -> None:
    """Fail with a one-line reason unless `path` is a readable GGUF file."""
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror})") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF model file (it starts with {magic!r}, not b'GGUF')")


def verify_file(path: Path, expected_sha256: str | None, expected_size: int | None = None) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ModelError(
            f"{path.name}: truncated or oversized download ({size} bytes, expected {expected_size})"
        )
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256.lower():
            raise ModelError(
                f"{path.name}: sha256 mismatch (got {actual}, expected {expected_sha256.lower()})"
            )
    check_gguf(path)


@dataclass(frozen=True)
class CachedModel:
    alias: str
    filename: str
    path: Path
    size: int


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.models_dir = home / "models"
        self.partial_dir = home / "partial"

    def path_for(self, alias: str, filename: str) -> Path:
        return self.models_dir / alias / filename

    def cached(self, alias: str, filename: str) -> Path | None:
        path = self.path_for(alias, filename)
        return path if path.is_file() else None

    def partial_path(self, alias: str, filename: str) -> Path:
        """A scratch place for one download; kept between attempts so downloads resume."""
        path = self.partial_dir / alias / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def install(
        self,
        downloaded: Path,
        alias: str,
        filename: str,
        expected_sha256: str | None,
        expected_size: int | None = None,
    ) -> Path:
        """Verify a finished download and move it into the cache in one atomic step."""
        try:
            verify_file(downloaded, expected_sha256, expected_size)
        except ModelError:
            downloaded.unlink(missing_ok=True)  # a bad file must not be resumed from
            raise
        target = self.path_for(alias, filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, target)
        return target

    def list(self) -> list[CachedModel]:
        if not self.models_dir.is_dir():
            return []
        found = []
        for path in sorted(self.models_dir.glob("*/*.gguf")):
            found.append(CachedModel(path.parent.name, path.name, path, path.stat().st_size))
        return found
