"""The model for the browser: a cached GGUF split into parts a web page can fetch and keep.

wllama (llama.cpp compiled to WebAssembly) loads a model given as `model-0000K-of-0000N.gguf`
parts, the format of llama.cpp's gguf-split: each part is a GGUF file of its own with some of
the tensors, the first also with all the metadata. Parts of at most DEFAULT_PART_BYTES stay
far below the browser's 2 GB ArrayBuffer limit, and a download that breaks resumes at the
part it was in.

The parts are written with llama.cpp's own GGUF library (`gguf`), into a scratch folder that
is renamed into place only when every part and the manifest are complete: a crash never
leaves a half-written set where the server would offer it. The manifest names each part with
its size and sha256, so the page can check what it stored.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from jisu.models.digest import file_sha256
from jisu.models.store import sha256_of
from jisu.types import ModelError

DEFAULT_PART_BYTES = 128 << 20
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Part:
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BrowserModel:
    """What the page needs to fetch, check and cache one model; `id` is its cache key, taken
    from the file's content, so moving the server to another address keeps the cache valid."""

    id: str
    name: str
    quant: str
    source_sha256: str
    size: int
    parts: tuple[Part, ...]
    format: int = MANIFEST_FORMAT

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> BrowserModel:
        parts = tuple(Part(**part) for part in data["parts"])
        return cls(**{**data, "parts": parts})


Progress = Callable[[int, int], None]  # (bytes written, bytes in all)


def browser_model_dir(home: Path, source_sha256: str) -> Path:
    return home / "web" / source_sha256[:16]


def load_manifest(folder: Path) -> BrowserModel | None:
    """The finished set in `folder`, or None when there is none (or it is not complete)."""
    try:
        manifest = BrowserModel.from_json(json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if manifest.format != MANIFEST_FORMAT:
        return None
    for part in manifest.parts:
        path = folder / part.file
        if not path.is_file() or path.stat().st_size != part.size:
            return None
    return manifest


def prepare_browser_model(source: Path, name: str, quant: str, home: Path,
                          part_bytes: int = DEFAULT_PART_BYTES,
                          on_progress: Progress | None = None) -> tuple[Path, BrowserModel]:
    """Split `source` for the browser once; later calls find the finished set and return it."""
    source_sha256 = file_sha256(source, home)  # remembered: a restart does not read 676 MB again
    folder = browser_model_dir(home, source_sha256)
    existing = load_manifest(folder)
    if existing is not None:
        return folder, existing
    scratch = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        files = split_gguf(source, scratch / "model.gguf", part_bytes, on_progress)
        parts = tuple(Part(path.name, path.stat().st_size, sha256_of(path)) for path in files)
        manifest = BrowserModel(
            id=f"{source_sha256[:16]}-{quant}", name=name, quant=quant,
            source_sha256=source_sha256, size=sum(part.size for part in parts), parts=parts,
        )
        (scratch / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1))
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete set left by a crash
        os.replace(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return folder, manifest


def split_gguf(source: Path, target: Path, part_bytes: int, on_progress: Progress | None = None) -> list[Path]:
    """Write `source` as gguf-split parts named after `target` (`model-00001-of-0000N.gguf`);
    always at least two, so the page has one way to load every model."""
    import gguf  # llama.cpp's GGUF library; imported here because only this step needs it

    try:
        reader = gguf.GGUFReader(source)
    except (ValueError, OSError) as error:
        raise ModelError(f"{source}: cannot be read as GGUF ({error})") from None
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    total = sum(int(tensor.n_bytes) for tensor in reader.tensors)
    # gguf-split's format needs two parts or more to name itself; a small model gets two.
    limit = min(part_bytes, max(1, total // 2))
    writer = gguf.GGUFWriter(target, arch, split_max_size=limit)
    for field in reader.fields.values():
        # The writer adds the architecture itself; "GGUF.*" fields are the header, not metadata.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    paths = writer.format_shard_names(target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    written = 0
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        written += int(tensor.n_bytes)
        if on_progress:
            on_progress(written, total)
    writer.close()
    return paths
