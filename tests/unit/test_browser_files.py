"""Browser mode's files without a model: the gguf-split parts of a small GGUF made here, the
routes that serve them, and `jisu export-web`'s folder."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, fake_runtime
from jisu.cli.export_web import export_web
from jisu.models.shards import MANIFEST, load_manifest, prepare_browser_model
from jisu.server.app import create_app
from jisu.server.browser import BrowserModelFiles, ModelFile

gguf = pytest.importorskip("gguf")

TENSOR_ROWS = 64  # 64 x 256 float32: 64 KB a tensor


def make_gguf(path, tensors: int = 6) -> dict[str, np.ndarray]:
    """A small but real GGUF: metadata of every kind the model has, and float tensors."""
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_name("tiny test model")
    writer.add_context_length(512)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_token_list(["<a>", "<b>", "中文"])
    writer.add_token_scores([0.0, -1.0, -2.5])
    written = {}
    rng = np.random.default_rng(7)
    for index in range(tensors):
        data = rng.standard_normal((TENSOR_ROWS, 256), dtype=np.float32)
        writer.add_tensor(f"blk.{index}.weight", data)
        written[f"blk.{index}.weight"] = data
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "tiny.gguf"
    tensors = make_gguf(path)
    return path, tensors


def test_parts_hold_every_tensor_and_the_metadata_once(tiny_model, tmp_path):
    path, tensors = tiny_model
    folder, manifest = prepare_browser_model(path, "Tiny", "f32", tmp_path / "home", part_bytes=150_000)
    assert len(manifest.parts) == 3, "64 KB tensors, at most 150 KB a part: two tensors each"
    assert [p.file for p in manifest.parts] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)], \
        "wllama and llama.cpp find the parts by gguf-split's names"
    seen = {}
    for number, part in enumerate(manifest.parts):
        reader = gguf.GGUFReader(folder / part.file)
        assert reader.get_field("split.no").contents() == number
        assert reader.get_field("split.count").contents() == 3
        assert reader.get_field("split.tensors.count").contents() == len(tensors)
        has_metadata = reader.get_field("tokenizer.chat_template") is not None
        assert has_metadata == (number == 0), "the first part carries the model's metadata"
        for tensor in reader.tensors:
            seen[tensor.name] = np.array(tensor.data)
    assert seen.keys() == tensors.keys()
    for name, data in tensors.items():
        np.testing.assert_array_equal(seen[name].reshape(data.shape), data)
    first = gguf.GGUFReader(folder / manifest.parts[0].file)
    assert first.get_field("tokenizer.ggml.tokens").contents() == ["<a>", "<b>", "中文"]
    assert first.get_field("general.architecture").contents() == "qwen2"
    assert manifest.size == sum(p.size for p in manifest.parts)
    assert manifest.id.startswith(manifest.source_sha256[:16]) and manifest.id.endswith("-f32"), \
        "the id comes from the file's content: the browser's cache key survives a new server address"


def test_a_small_model_still_gets_two_parts(tiny_model, tmp_path):
    path, _ = tiny_model
    _, manifest = prepare_browser_model(path, "Tiny", "f32", tmp_path / "home")
    assert len(manifest.parts) >= 2, "one way to load every model: gguf-split names need two parts"


def test_prepared_once_then_found(tiny_model, tmp_path):
    path, _ = tiny_model
    home = tmp_path / "home"
    folder, first = prepare_browser_model(path, "Tiny", "f32", home, part_bytes=150_000)
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    time.sleep(0.01)
    again_folder, again = prepare_browser_model(path, "Tiny", "f32", home, part_bytes=150_000)
    assert (again_folder, again) == (folder, first)
    assert (folder / MANIFEST).stat().st_mtime_ns == stamp, "a finished set is not written again"


def test_a_failure_midway_leaves_nothing_behind(tiny_model, tmp_path):
    path, _ = tiny_model
    home = tmp_path / "home"

    def broken(done, total):
        if done > total // 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        prepare_browser_model(path, "Tiny", "f32", home, part_bytes=150_000, on_progress=broken)
    assert not list((home / "web").iterdir()), "no half-written set, no scratch folder"
    folder, manifest = prepare_browser_model(path, "Tiny", "f32", home, part_bytes=150_000)
    assert load_manifest(folder) == manifest


def test_a_truncated_part_is_not_a_finished_set(tiny_model, tmp_path):
    path, _ = tiny_model
    folder, manifest = prepare_browser_model(path, "Tiny", "f32", tmp_path / "home", part_bytes=150_000)
    with open(folder / manifest.parts[1].file, "r+b") as part:
        part.truncate(100)
    assert load_manifest(folder) is None
    _, again = prepare_browser_model(path, "Tiny", "f32", tmp_path / "home", part_bytes=150_000)
    assert again == manifest and load_manifest(folder) == manifest, "it is made again, whole"


# ---- the routes -------------------------------------------------------------------------------


@pytest.fixture
def browser_files(tiny_model, tmp_path):
    path, _ = tiny_model
    return BrowserModelFiles(lambda: ModelFile(path, "Tiny", "f32"), tmp_path / "home", part_bytes=150_000)


@pytest.fixture
def client(browser_files):
    with fake_runtime() as runtime:
        with TestClient(create_app(runtime, browser_model=browser_files), base_url=LOCAL_URL) as test_client:
            yield test_client


def ready_manifest(client) -> dict:
    for _ in range(500):
        response = client.get("/web-model/manifest.json")
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "preparing"
        time.sleep(0.01)
    raise AssertionError("the parts were never ready")


def test_manifest_is_202_until_the_parts_exist_then_200(client):
    manifest = ready_manifest(client)
    assert [part["file"] for part in manifest["parts"]][0] == "model-00001-of-00003.gguf"
    assert client.get("/web-config.json").json() == {"server": True, "browser_mode": True}


def test_parts_are_served_whole_and_by_range(client, browser_files):
    manifest = ready_manifest(client)
    part = manifest["parts"][1]
    url = f"/web-model/{manifest['id']}/{part['file']}"
    whole = client.get(url)
    assert whole.status_code == 200 and len(whole.content) == part["size"]
    assert "immutable" in whole.headers["cache-control"], "named by content: never stale"
    resumed = client.get(url, headers={"Range": "bytes=1000-"})
    assert resumed.status_code == 206, "a broken download resumes where it stopped"
    assert resumed.content == whole.content[1000:]


@pytest.mark.parametrize("path", ["/web-model/{id}/../../secret", "/web-model/{id}/manifest.json",
                                  "/web-model/other-id/model-00001-of-00003.gguf", "/web-model/{id}/x.gguf"])
def test_only_listed_parts_are_served(client, path):
    manifest = ready_manifest(client)
    response = client.get(path.format(id=manifest["id"]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_model_that_cannot_be_prepared_is_a_503_that_says_why(tmp_path):
    def unreachable():
        raise OSError("no route to the hub")

    files = BrowserModelFiles(unreachable, tmp_path / "home")
    with fake_runtime() as runtime, TestClient(create_app(runtime, browser_model=files), base_url=LOCAL_URL) as client:
        for _ in range(500):
            response = client.get("/web-model/manifest.json")
            if response.status_code != 202:
                break
            time.sleep(0.01)
        assert response.status_code == 503
        assert "no route to the hub" in response.json()["error"]["message"]


def test_browser_mode_off_is_a_404_that_says_so():
    with fake_runtime() as runtime, TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
        response = client.get("/web-model/manifest.json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "browser_mode_off"
        assert client.get("/web-config.json").json() == {"server": True, "browser_mode": False}, \
            "the page hides its switch"


def test_the_page_is_cross_origin_isolated_and_may_compile_wasm(client):
    for path in ("/", "/static/app.js", "/static/vendor/wllama/wllama.wasm"):
        response = client.get(path)
        assert response.headers["cross-origin-opener-policy"] == "same-origin", path
        assert response.headers["cross-origin-embedder-policy"] == "require-corp", path
    csp = client.get("/").headers["content-security-policy"]
    assert "'wasm-unsafe-eval'" in csp and "'unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", "")
    assert client.get("/static/vendor/wllama/wllama.wasm").headers["content-type"] == "application/wasm"


# ---- jisu export-web ---------------------------------------------------------------------------


def test_export_web_writes_a_static_site(tiny_model, tmp_path):
    path, _ = tiny_model
    target = tmp_path / "site"
    result = CliRunner().invoke(export_web, [str(target), "--model", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads((target / "web-config.json").read_text()) == {"server": False}
    manifest = json.loads((target / "web-model" / MANIFEST).read_text())
    for part in manifest["parts"]:
        assert (target / "web-model" / manifest["id"] / part["file"]).stat().st_size == part["size"]
    assert (target / "index.html").is_file() and (target / "static" / "app.js").is_file()
    assert (target / "static" / "vendor" / "wllama" / "wllama.wasm").is_file()
    assert 'src="static/app.js"' in (target / "index.html").read_text(), "relative: hostable under any path"
    readme = (target / "README.md").read_text()
    assert "Cross-Origin-Opener-Policy: same-origin" in readme and "require-corp" in readme
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".site.partial")]


def test_export_web_refuses_a_folder_with_files_in_it(tiny_model, tmp_path):
    path, _ = tiny_model
    target = tmp_path / "site"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = CliRunner().invoke(export_web, [str(target), "--model", str(path)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert os.listdir(target) == ["keep.txt"], "nothing of the user's is touched"
