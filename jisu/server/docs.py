"""/docs: the API's Swagger UI page, served entirely by jisu so it works with no network.

FastAPI's own /docs loads Swagger UI from a CDN. Here its files come from the
`fastapi-offline` package (Swagger UI's built files, on PyPI, installed with jisu), and the
page's start-up script is a file of ours rather than inline, so the page runs under a CSP
that allows nothing from anywhere else (guard.DOCS_CSP).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from jisu.server.errors import ApiError

DOCS_PATH = "/docs"
ASSETS = f"{DOCS_PATH}/assets"
# The only files served from the package, by name: nothing else under it is reachable.
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                 "favicon.png": "image/png"}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>jisu API</title>
<link rel="icon" href="{ASSETS}/favicon.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/start.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise send the schema to validator.swagger.io.
START_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

router = APIRouter(include_in_schema=False)


def swagger_dir():
    return resources.files("fastapi_offline") / "static"


@router.get(DOCS_PATH)
async def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get(f"{ASSETS}/start.js")
async def start_script() -> Response:
    return Response(START_SCRIPT, media_type="text/javascript")


@router.get(ASSETS + "/{name}")
async def swagger_file(name: str) -> FileResponse:
    if name not in SWAGGER_FILES:
        raise ApiError(404, f"No such file: {ASSETS}/{name}", code="not_found")
    return FileResponse(str(swagger_dir() / name), media_type=SWAGGER_FILES[name])
