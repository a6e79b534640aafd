"""The web console: one static page and its assets, served by the API itself.

The console is plain HTML, CSS and ES modules that call only the public HTTP APIs
(the broker and the push-api) from the browser, so no rule lives here twice: this
module only hands out files. They are read from ``console_static/`` once per process
(on first use) and kept in memory with an ETag, because a Lambda serves many requests
from one warm process and the files never change while it runs.

    app.register_blueprint(console.blueprint)
"""

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from chalice import Blueprint, Response

from chalicelib.http import api_view, error_response

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "console_static"
PAGE = "index.html"

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Everything comes from this origin, except that the live pane opens an EventSource on
# the instance's push-stream URL, which is another origin chosen when the instance is
# provisioned (a port of its own per instance locally, a load balancer name on AWS) and
# known only after sign-in. This module cannot list those origins without reading every
# instance, so connect-src allows any http(s) origin. That widens only where scripts
# may connect, not what may run: script-src is 'self' with no inline code and no eval,
# so no injected script exists to use it.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self' http: https:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # The files are not versioned (no build step): revalidate each time, cheaply by ETag.
    "Cache-Control": "no-cache",
}

blueprint = Blueprint(__name__)
view = api_view(lambda: blueprint.current_request)


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every servable file by name; only these names can ever be served (no paths)."""
    loaded: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if not path.is_file() or path.suffix not in TYPES:
            continue
        body = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()[:20]
        loaded[path.name] = Asset(body, TYPES[path.suffix], f'"{digest}"')

    log.info("console assets loaded count=%d", len(loaded))
    return loaded


def serve(name: str) -> Response:
    """An asset by name; the page itself only at /console, where its relative URLs work."""
    asset = assets().get(name)
    if asset is None or name == PAGE:
        return error_response(404, f"no console asset {name[:64]!r}",
                              {"X-Content-Type-Options": "nosniff"})

    return _reply(asset)


def _reply(asset: Asset) -> Response:
    headers: dict[str, str | list[str]] = {**SECURITY_HEADERS, "ETag": asset.etag}
    request = blueprint.current_request
    if asset.etag in (request.headers.get("if-none-match") or ""):
        return Response(body="", status_code=304, headers=headers)

    headers["Content-Type"] = asset.content_type
    return Response(body=asset.body, status_code=200, headers=headers)


@blueprint.route("/console", methods=["GET"])
@view
def console_page() -> Response:
    return _reply(assets()[PAGE])


@blueprint.route("/console/{asset}", methods=["GET"])
@view
def console_asset(asset: str) -> Response:
    return serve(asset)
