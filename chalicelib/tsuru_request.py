"""Parse the bodies Tsuru sends, in either of its encodings, into one shape.

Tsuru speaks form encoding by default (repeated fields for lists, ``parameters.<k>``
for the parameter bag) and JSON with camelCase names when a service asks for it. Both
become a ``TsuruFields`` with form-style names, so the broker has one code path.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from chalicelib.errors import BadRequest
from chalicelib.http import parse_json

LIST_FIELDS = frozenset({"tags", "app-hosts", "app-internal-hosts", "app-cluster-addresses"})

# Fields the broker reads: these must be strings. Anything else Tsuru sends, now or in a
# later version, is ignored whatever its type, so a new Tsuru field never breaks a bind.
SCALAR_FIELDS = frozenset({
    "name", "plan", "team", "user", "eventid", "description", "app-name", "app-host",
    "unit-host", "job-name",
})

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _form_name(json_name: str) -> str:
    """``appInternalHosts`` -> ``app-internal-hosts``; ``eventID`` -> ``eventid``."""
    if json_name == "eventID":
        return "eventid"
    return _CAMEL.sub(r"-\1", json_name).lower()


@dataclass
class TsuruFields:
    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    parameters: dict[str, object] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def get_list(self, name: str) -> list[str]:
        return self.lists.get(name, [])

    def require(self, *names: str) -> None:
        missing = [n for n in names if not self.values.get(n)]
        if missing:
            raise BadRequest(f"missing required fields: {', '.join(missing)}")


def parse(raw_body: bytes | None, content_type: str | None) -> TsuruFields:
    """Fields of a Tsuru request body; BadRequest when the body cannot be read."""
    body = raw_body or b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None

    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return _parse_json(text)
    return _parse_form(text)


def _parse_form(text: str) -> TsuruFields:
    fields = TsuruFields()
    for name, values in parse_qs(text, keep_blank_values=True).items():
        if name.startswith("parameters."):
            fields.parameters[name.removeprefix("parameters.")] = values[-1]
        elif name in LIST_FIELDS:
            fields.lists[name] = values
        else:
            fields.values[name] = values[-1]
    return fields


def _parse_json(text: str) -> TsuruFields:
    if not text.strip():
        return TsuruFields()

    data = parse_json(text)
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")

    fields = TsuruFields()
    for json_name, value in data.items():
        name = _form_name(json_name)
        if name == "parameters":
            if value is not None and not isinstance(value, dict):
                raise BadRequest("parameters must be an object")
            fields.parameters = dict(value or {})
        elif name in LIST_FIELDS:
            fields.lists[name] = _string_list(json_name, value)
        elif value is None:
            continue
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            fields.values[name] = str(value)
        elif name in SCALAR_FIELDS:
            raise BadRequest(f"{json_name} must be a string")
    return fields


def _string_list(name: str, value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a list of strings")
    return value
