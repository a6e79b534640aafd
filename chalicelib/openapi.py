"""The OpenAPI document of the broker and the push-api, served at ``/api/openapi.json``.

The document is a JSON file beside this module, written by hand and held to the
implementation by ``tests/test_openapi.py``. It is read once per process (a Lambda
container serves many requests); each answer gets its own copy so the ``servers`` entry
of one request never leaks into another.
"""

import copy
import functools
import json
from pathlib import Path

DOCUMENT_FILE = Path(__file__).with_name("openapi.json")


@functools.cache
def _loaded() -> dict:
    return json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))


def openapi_document(server_url: str | None = None) -> dict:
    """The document; with ``server_url``, ``servers`` names where it was fetched from.

    API Gateway puts the stage in the path, so only the request knows the real base URL
    a client (or a fuzzer) must call.
    """
    document = copy.deepcopy(_loaded())
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
