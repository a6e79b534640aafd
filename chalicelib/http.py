"""HTTP glue shared by every route: errors to JSON in one place, bodies, base URLs.

Chalice's middleware never sees exceptions raised by a view, so every route is wrapped
by ``api_view`` instead: a PushaasError becomes its status with
``{"code", "message"}``, a Redis outage a fast 503, anything else a generic 500 and
one log line with the path and traceback. Request bodies are never logged.
"""

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import redis
from chalice.app import Request, Response

from chalicelib.errors import BadRequest, ConfigError, PushaasError

log = logging.getLogger(__name__)

JSON_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body={"code": status, "message": message},
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def normalize_error(response: Response) -> Response:
    """Give Chalice's own errors (415, 405, ...) the ``{"code", "message"}`` shape too.

    Their headers are kept: a 405 must say in ``Allow`` which methods the path takes.
    """
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response

    kept = {k: v for k, v in (response.headers or {}).items()
            if isinstance(v, str) and k.lower() != "content-type"}
    return error_response(response.status_code, str(body.get("Message") or body["Code"]), kept)


def api_view(current_request: Callable[[], Request]) -> Callable:
    """Decorator factory: ``@api_view(lambda: app.current_request)``."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                result = view(*args, **kwargs)
            except PushaasError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable path=%s error=%s",
                            _path(current_request), type(exc).__name__)
                return error_response(503, "storage unavailable, try again",
                                      {"Retry-After": "1"})
            except ConfigError as exc:
                log.error("service misconfigured path=%s error=%s", _path(current_request), exc)
                return error_response(500, "service misconfigured")
            except Exception:
                log.exception("unhandled error path=%s", _path(current_request))
                return error_response(500, "internal error")

            if isinstance(result, Response):
                return result
            return Response(body=result, status_code=200,
                            headers={"Content-Type": "application/json"})

        return wrapper

    return decorate


def _path(current_request: Callable[[], Request]) -> str:
    try:
        return current_request().path
    except Exception:
        return "?"


# A surrogate code point, escaped (\ud800) or encoded raw (json.loads accepts both); only
# a body containing one pays for the full check.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes | str) -> object:
    """Strict JSON: BadRequest for what json.loads takes but is not valid, or not text.

    Python's parser accepts NaN and Infinity, lone surrogates (which no UTF-8 storage can
    hold: Redis would fail half-way through a request) and fails with RecursionError on
    deep nesting; all of them are the client's error, so they get a 400 here.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        value = json.loads(data, parse_constant=_no_constant)
        if _SURROGATE.search(data):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a ValueError too: before the clause that takes those
        raise BadRequest("request body has a lone surrogate (\\ud800-\\udfff); "
                         "strings must be valid Unicode") from None
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    return value


def json_body(request: Request) -> object:
    """The request body as JSON whatever the Content-Type (curl's default is a form)."""
    raw = request.raw_body or b""
    if not raw.strip():
        raise BadRequest("request body is empty; a JSON object is expected")
    return parse_json(raw)


def header(request: Request, name: str) -> str | None:
    """A request header, case-insensitively (Chalice's headers are case-insensitive)."""
    return request.headers.get(name)


def base_url(request: Request) -> str:
    """The public URL this API was reached at, for the env vars of a bound app."""
    host = header(request, "host") or "localhost"
    proto = header(request, "x-forwarded-proto") or "http"
    stage = (request.context or {}).get("stage", "")
    if host.endswith(".amazonaws.com") and stage:
        return f"{proto}://{host}/{stage}"
    return f"{proto}://{host}"


def empty(status: int) -> Response:
    return Response(body="", status_code=status)


def created(body: object) -> Response:
    return Response(body=body, status_code=201, headers={"Content-Type": "application/json"})
