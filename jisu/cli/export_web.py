"""`jisu export-web DIR`: the chat page and the model as a static folder for any web server.

The folder runs the model in the visitor's browser (browser mode) with no jisu server behind
it: a phone's local web server, a static host, a USB stick served by `python -m http.server`
with two headers added. Its README.md says which headers and why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

from jisu.cli.common import UserError, reports_user_errors
from jisu.config import DEFAULT_BROWSER_QUANT, jisu_home
from jisu.models.shards import MANIFEST, prepare_browser_model
from jisu.server.browser import ModelFile, wllama_installed

STATIC_README = """\
# jisu in the browser

This folder is jisu's chat page with {name} ({quant}, {size_mb} MB) for the page to run
itself: the model runs in the visitor's browser (WebAssembly), nothing is sent anywhere.
The first visit downloads the model into the browser's storage; later visits load it from
there and work offline.

Serve the folder with any web server that adds these two headers to every response:

    Cross-Origin-Opener-Policy: same-origin
    Cross-Origin-Embedder-Policy: require-corp

Without them the browser gives the page no SharedArrayBuffer, so the model runs on one thread
(the page says so). Browsers also allow threads and the model cache only on https or on
localhost. `.wasm` files must be served as `application/wasm`.

Examples:

- Python (a few lines, no install):

      python3 - <<'EOF'
      import functools, http.server
      class Handler(http.server.SimpleHTTPRequestHandler):
          def end_headers(self):
              self.send_header("Cross-Origin-Opener-Policy", "same-origin")
              self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
              super().end_headers()
      http.server.ThreadingHTTPServer(("127.0.0.1", 8000),
          functools.partial(Handler, directory=".")).serve_forever()
      EOF

- nginx: `add_header Cross-Origin-Opener-Policy same-origin always;` and
  `add_header Cross-Origin-Embedder-Policy require-corp always;` in the `location`.
- Caddy: `header Cross-Origin-Opener-Policy same-origin` and
  `header Cross-Origin-Embedder-Policy require-corp`.

Files: `index.html` and `static/` (the page, wllama's WebAssembly build, vendored libraries),
`web-model/manifest.json` with the model's parts under `web-model/{model_id}/` (gguf-split
parts, each listed with its size and sha256), `web-config.json` (tells the page there is no
jisu server here).
"""


def locate_browser_model(model: str | None, quant: str | None) -> ModelFile:
    """The GGUF for browsers: the named model in the browser's format (fetched or quantized
    like `jisu pull` does), or a local file as it is."""
    from jisu.engine.quantize import quantize
    from jisu.models.resolve import looks_like_path, resolve_model

    is_path = bool(model) and looks_like_path(model)
    resolved = resolve_model(model, None if is_path else (quant or DEFAULT_BROWSER_QUANT), quantizer=quantize)
    if resolved.fallback_note:
        click.echo(f"jisu: {resolved.fallback_note}", err=True)
    return ModelFile(resolved.path, resolved.display_name, resolved.quant or "gguf")


def _web_dir() -> Path:
    from jisu.server.app import web_dir

    return Path(str(web_dir()))


def _place(source: Path, target: Path) -> None:
    """Hard-link when on the same disk (a model is hundreds of MB), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _progress(done: int, total: int) -> None:
    if total:
        sys.stderr.write(f"\rjisu: splitting the model for browsers: {100 * done // total}%")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


@click.command("export-web")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", "-m", "model", default=None, metavar="ALIAS|PATH",
              help="Model alias (see `jisu models`) or a path to a .gguf file.")
@click.option("--quant", default=None, help=f"Format shipped to browsers (default {DEFAULT_BROWSER_QUANT}).")
@reports_user_errors
def export_web(folder: Path, model: str | None, quant: str | None) -> None:
    """Write the chat page and the model as a static site that runs the model in the browser."""
    folder = folder.expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; name a new folder")
    if not wllama_installed(_web_dir()):
        raise UserError("wllama is not installed: run scripts/fetch_wllama.sh (it needs npm)")
    model_file = locate_browser_model(model, quant)
    parts_dir, manifest = prepare_browser_model(model_file.path, model_file.name, model_file.quant,
                                                jisu_home(), on_progress=_progress)
    scratch = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        web = _web_dir()
        shutil.copytree(web, scratch / "static", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(web / "index.html", scratch / "index.html")
        model_dir = scratch / "web-model" / manifest.id
        model_dir.mkdir(parents=True)
        for part in manifest.parts:
            _place(parts_dir / part.file, model_dir / part.file)
        shutil.copy2(parts_dir / MANIFEST, scratch / "web-model" / MANIFEST)
        (scratch / "web-config.json").write_text(json.dumps({"server": False}) + "\n")
        (scratch / "README.md").write_text(STATIC_README.format(
            name=manifest.name, quant=manifest.quant, size_mb=manifest.size // 10**6, model_id=manifest.id))
        if folder.exists():
            folder.rmdir()  # empty, checked above
        os.replace(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    click.echo(f"jisu: wrote {folder} ({manifest.name}, {manifest.quant}, {manifest.size // 10**6} MB); "
               f"its README.md says how to serve it", err=True)
