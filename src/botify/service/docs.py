"""`/docs`: an interactive page for the service's OpenAPI document, served from the service.

The page is Swagger UI from the `swagger-ui-bundle` package (installed from PyPI with botify):
its script and style are served by the service itself under `/docs/`, so the page works
offline and loads nothing from a CDN. Files are read once, on the first request for them.
"""

from __future__ import annotations

from functools import cache

PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>botify API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/botify-docs.js"></script>
</body>
</html>
"""

# Inline scripts would need a looser Content-Security-Policy: the start-up is a file too.
START = b"""window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  validatorUrl: null, tryItOutEnabled: true});
"""

CONTENT_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8", ".png": b"image/png"}
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
SECURITY = (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")


@cache
def _vendored(name: str) -> bytes:
    from swagger_ui_bundle import swagger_ui_path

    return (swagger_ui_path / name).read_bytes()


def docs_file(name: str) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """The body and headers of `/docs` ("") or `/docs/<name>`; None for any other name."""
    if name == "":
        return PAGE, [(b"content-type", b"text/html; charset=utf-8"), SECURITY]
    if name == "botify-docs.js":
        return START, [(b"content-type", CONTENT_TYPES[".js"])]
    if name not in FILES:
        return None
    return _vendored(name), [(b"content-type", CONTENT_TYPES[name[name.rindex("."):]]),
                             (b"cache-control", b"max-age=86400")]
