"""The OpenAPI document held to the implementation, and the parsers under it fuzzed.

Four layers: the document is a valid OpenAPI document; it lists exactly the routes the
app registers; property tests drive the request parsers and data formats with arbitrary
input; schemathesis fuzzes every operation of the running local stack (``make run`` on
free ports) and fails on any 5xx, any status, content type, body or header the document
does not describe, a 405 without ``Allow``, and an operation that answers 2xx without
credentials.
"""

import base64
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from chalice.app import RouteEntry
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

import app as application
from chalicelib import envelope, messages, tsuru_request
from chalicelib.credentials import parse_basic
from chalicelib.errors import BadRequest, PushaasError, Unauthorized
from chalicelib.openapi import openapi_document
from chalicelib.plans import DEFAULT_CHANNEL_ID_PATTERN, load_plans
from tests.agent_helpers import AGENT_DIR  # noqa: F401  (puts push_agent on sys.path)
from tests.api import body
from tests.servers import free_port
from tests.stack import LocalStack

from push_agent import streamids  # isort: skip

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
TSURU_TYPES = {"application/x-www-form-urlencoded", "application/json"}
PLAN = load_plans()["small"]
FUZZ_INSTANCE = "fuzzed"
FUZZ_CHANNEL = "news"
FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_schema_conformance, response_headers_conformance,
               unsupported_method, ignored_auth]
# The largest millisecond count datetime (and so ISO 8601 without expanded years) holds:
# 9999-12-31T23:59:59.999Z. Redis assigns ids from its clock, far below that.
MAX_ISO_MILLIS = 253402300799999
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


# ---- (a) the document is valid -------------------------------------------------------

def test_document_is_valid_openapi() -> None:
    document = openapi_document()
    validate(document)
    assert document["openapi"].startswith("3.0")

    loaded = schemathesis.openapi.from_dict(document)
    assert len(list(loaded.get_all_operations())) == sum(
        len(set(item) & HTTP_METHODS) for item in document["paths"].values())


def test_document_is_loaded_once_and_copied_per_answer() -> None:
    first = openapi_document("http://a.example")
    second = openapi_document()
    assert first["servers"] == [{"url": "http://a.example"}]
    assert "servers" not in second


def test_served_document_names_the_url_it_was_fetched_from(client) -> None:
    served = client.http.get("/api/openapi.json", headers={"Host": "push.example.com",
                                                           "X-Forwarded-Proto": "https"})
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "application/json"
    assert body(served) == {**openapi_document(), "servers": [{"url": "https://push.example.com"}]}


def test_chalice_405_keeps_allow_and_the_error_shape(client) -> None:
    """405 comes from Chalice itself, outside every view: the document's component says so."""
    response = client.http.patch("/api/v1/channels", body=b"{}")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert body(response) == {"code": 405, "message": "Unsupported method: PATCH"}
    assert "MethodNotAllowed" in openapi_document()["components"]["responses"]


# ---- (b) the document and the app list the same routes -------------------------------

def _documented() -> dict[tuple[str, str], dict]:
    return {(path, method.upper()): operation
            for path, item in openapi_document()["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS}


def _registered() -> dict[tuple[str, str], RouteEntry]:
    return {(path, method): entry
            for path, methods in application.app.routes.items()
            for method, entry in methods.items()}


def test_every_route_is_documented_and_nothing_else() -> None:
    assert sorted(_documented()) == sorted(_registered())


def test_each_operation_names_its_view_and_content_types() -> None:
    """operationId is the view's name, and a documented body type is one Chalice accepts."""
    registered = _registered()
    for key, operation in _documented().items():
        entry = registered[key]
        assert operation["operationId"] == entry.view_name, key

        documented_types = set(operation.get("requestBody", {}).get("content", {}))
        assert documented_types <= set(entry.content_types), key
        if key[0].startswith("/resources") and documented_types:
            assert documented_types == TSURU_TYPES, key
        assert "415" in operation["responses"], key


def test_security_per_api() -> None:
    for (path, method), operation in _documented().items():
        expected: list[dict[str, list]]
        if path.startswith("/resources"):
            expected = [{"brokerAuth": []}]
        elif path.startswith("/api/v1/"):
            expected = [{"publisherAuth": []}]
        else:
            expected = []
        assert operation["security"] == expected, (path, method)
        if expected:
            assert "401" in operation["responses"], (path, method)


# ---- (c) parsers and data formats, by property ---------------------------------------

CONTENT_TYPES = st.one_of(
    st.none(), st.text(max_size=40),
    st.sampled_from(["application/json", "application/JSON; charset=utf-8",
                     "application/x-www-form-urlencoded", "text/plain", ""]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@PROPERTY
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                     JSON_VALUES.map(lambda v: json.dumps(v).encode())),
       content_type=CONTENT_TYPES)
def test_tsuru_parse_never_raises_but_bad_request(raw: bytes, content_type: str | None) -> None:
    try:
        fields = tsuru_request.parse(raw, content_type)
    except BadRequest:
        return
    assert isinstance(fields, tsuru_request.TsuruFields)


FIELD_TEXT = st.text(max_size=30)
TSURU_BODIES = st.fixed_dictionaries(
    {"name": FIELD_TEXT, "team": FIELD_TEXT, "user": FIELD_TEXT},
    optional={"plan": FIELD_TEXT, "description": FIELD_TEXT, "eventid": FIELD_TEXT,
              "app-name": FIELD_TEXT, "unit-host": FIELD_TEXT,
              "tags": st.lists(FIELD_TEXT, min_size=1, max_size=4),
              "app-hosts": st.lists(FIELD_TEXT, min_size=1, max_size=4),
              "parameters": st.dictionaries(st.text(min_size=1, max_size=10), FIELD_TEXT,
                                            max_size=3)},
)


def _camel(form_name: str) -> str:
    if form_name == "eventid":
        return "eventID"
    head, *rest = form_name.split("-")
    return head + "".join(part.capitalize() for part in rest)


@PROPERTY
@given(fields=TSURU_BODIES)
def test_tsuru_form_and_json_encodings_parse_alike(fields: dict) -> None:
    """What Tsuru sends in either encoding reaches the broker as the same fields."""
    bag = fields.pop("parameters", {})
    form = urlencode({**fields, **{f"parameters.{k}": v for k, v in bag.items()}}, doseq=True)
    as_json = json.dumps({**{_camel(k): v for k, v in fields.items()}, "parameters": bag})

    from_form = tsuru_request.parse(form.encode(), "application/x-www-form-urlencoded")
    from_json = tsuru_request.parse(as_json.encode(), "application/json; charset=utf-8")
    assert from_form == from_json
    assert from_form.parameters == bag
    for name, value in fields.items():
        if isinstance(value, list):
            assert from_form.get_list(name) == value
        else:
            assert from_form.get(name) == value


CHANNEL_IDS = st.from_regex(re.compile(DEFAULT_CHANNEL_ID_PATTERN), fullmatch=True)
VALID_MESSAGES = st.fixed_dictionaries({
    "channels": st.lists(CHANNEL_IDS, min_size=1, max_size=PLAN.max_channels_per_message),
    "content": st.text(min_size=1, max_size=200),
})
# Around the limits, built cheaply: ids c0, c1, ... and two-byte characters.
MANY_CHANNELS = st.integers(98, 102).map(lambda n: [f"c{i}" for i in range(n)])
BORDER_CONTENT = st.integers(16382, 16386).map(lambda n: "\u00e9" * n)
MESSAGE_LIKE = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={
        "channels": st.one_of(JSON_VALUES, st.lists(CHANNEL_IDS | JSON_VALUES, max_size=3),
                              MANY_CHANNELS),
        "content": st.one_of(JSON_VALUES, BORDER_CONTENT),
    }),
)


@PROPERTY
@given(value=MESSAGE_LIKE)
def test_validate_message_answers_only_4xx(value: object) -> None:
    try:
        channels, text = messages.validate_message(PLAN, value)
    except PushaasError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert channels and text and isinstance(text, str)


@PROPERTY
@given(message=VALID_MESSAGES)
def test_valid_messages_round_trip(message: dict) -> None:
    wire = json.loads(json.dumps(message))
    channels, text = messages.validate_message(PLAN, wire)
    assert channels == list(dict.fromkeys(message["channels"]))
    assert text == message["content"]


STREAM_IDS = st.tuples(st.integers(0, MAX_ISO_MILLIS), st.integers(0, 2**64 - 1)).map(
    lambda pair: f"{pair[0]}-{pair[1]}")


@PROPERTY
@given(entry_id=STREAM_IDS, channel=CHANNEL_IDS, text=st.text())
def test_envelope_is_json_with_the_four_fields(entry_id: str, channel: str, text: str) -> None:
    delivered = json.loads(envelope.envelope(entry_id, channel, text).decode("utf-8"))
    assert delivered == {"id": entry_id, "channel": channel, "text": text,
                         "time": envelope.entry_time(entry_id)}


@PROPERTY
@given(entry_id=STREAM_IDS)
def test_entry_time_is_iso8601_utc_of_the_id(entry_id: str) -> None:
    stamp = envelope.entry_time(entry_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    moment = datetime.fromisoformat(stamp)
    assert moment.utcoffset() == timedelta(0)
    assert moment == EPOCH + timedelta(milliseconds=int(entry_id.split("-")[0]))


REDIS_IDS = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).filter(
    lambda pair: pair != (0, 0)).map(lambda pair: f"{pair[0]}-{pair[1]}")


@settings(max_examples=100, deadline=None, database=None)
@given(ids=st.lists(REDIS_IDS, min_size=2, max_size=8, unique=True))
def test_stream_id_order_is_redis_order(redis_server, ids: list[str]) -> None:
    """Sorted by ``streamids.parse``, Redis accepts every id in turn and reads them back so."""
    conn = redis_server.client()
    key = "openapi-test:stream-order"
    conn.delete(key)
    ordered = sorted(ids, key=streamids.parse)
    try:
        for entry_id in ordered:
            assert conn.xadd(key, {"f": "v"}, id=entry_id) == entry_id
        assert [entry_id for entry_id, _ in conn.xrange(key)] == ordered
        # Re-adding the smallest id fails; after the largest possible id, every add does.
        with pytest.raises(Exception, match="equal or smaller|exhausted the last possible ID"):
            conn.xadd(key, {"f": "v"}, id=ordered[0])
    finally:
        conn.delete(key)
        conn.close()


HEADER_NAMES = st.sampled_from(["authorization", "Authorization", "x-other"]) | st.text(max_size=15)


@PROPERTY
@given(headers=st.dictionaries(HEADER_NAMES, st.text(max_size=80) | st.sampled_from(
    ["Basic", "Basic ", "basic ===", "Basic w6k=", "Basic \u00e9\u00e9\u00e9\u00e9",
     "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Bearer abc"]), max_size=3))
def test_parse_basic_answers_credentials_or_unauthorized(headers: dict[str, str]) -> None:
    try:
        user, password = parse_basic(headers)
    except Unauthorized:
        return
    assert isinstance(user, str) and isinstance(password, str)


@pytest.mark.parametrize("path", ["/resources/plans", "/api/v1/auth"])
def test_non_ascii_authorization_is_401_not_500(client, path: str) -> None:
    """HTTP servers hand header bytes over as latin-1 text; base64 refuses non-ASCII."""
    response = client.http.get(path, headers={"Authorization": "Basic \u00e9t\u00e9"})
    assert response.status_code == 401
    assert body(response) == {"code": 401, "message": "invalid credentials"}


@PROPERTY
@given(user=st.text().filter(lambda u: ":" not in u), password=st.text(),
       scheme=st.sampled_from(["Basic", "basic", "BASIC"]))
def test_parse_basic_round_trips(user: str, password: str, scheme: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert parse_basic({"Authorization": f"{scheme} {token}"}) == (user, password)


# ---- (d) schemathesis against the running stack --------------------------------------
#
# The schema is loaded from the document file at import, so pytest can list one test per
# operation before any server runs (schemathesis's lazy fixture loader does not work with
# pytest 9.2); the stack is started on the port chosen here, and the served document is
# checked equal to this file above. Credentials exist only once the stack runs, so an
# auth provider hands each operation those of its own security scheme at call time.

API_PORT = free_port()
FUZZ_CONFIG = schemathesis.Config.from_dict({
    "base-url": f"http://127.0.0.1:{API_PORT}",
    "generation": {"max-examples": 25, "database": "none"},
    "suppress-health-check": ["too_slow", "filter_too_much"],
    # TRACE and QUERY never reach the app locally: Python's http.server under `chalice
    # local` answers them 501 itself (on AWS, API Gateway answers them). Every other
    # method a path does not list must get Chalice's 405 with Allow.
    "phases": {"coverage": {"unexpected-methods": ["get", "put", "post", "delete", "patch",
                                                   "options"]}},
    # Half of the instance names and channel ids are the fuzz instance's own, so cases
    # get past 404 into the code behind it.
    "dictionaries": {"instances": {"values": [FUZZ_INSTANCE]},
                     "channels": {"values": [FUZZ_CHANNEL]}},
    "parameters": {"path.name": {"dictionary": "instances", "probability": 0.5},
                   "path.channel_id": {"dictionary": "channels", "probability": 0.5}},
})
FUZZ_SCHEMA = schemathesis.openapi.from_dict(openapi_document(), config=FUZZ_CONFIG)
# Scheme name -> the real Authorization header, once the stack runs.
CREDENTIALS: dict[str, str] = {}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _placeholder(scheme: str) -> str:
    return _basic(scheme, "placeholder")


@FUZZ_SCHEMA.auth(refresh_interval=None)
class SchemeCredentials:
    """Each operation gets the credentials of the scheme it declares; none for public ones.

    Schemathesis builds some cases while pytest collects, before any credentials exist,
    so cases carry a placeholder per scheme that ``call`` swaps for the real header.
    Cases whose credentials schemathesis removed or mangled on purpose keep their own.
    """

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str | None:
        operation = case.operation
        declared = openapi_document()["paths"][operation.path][operation.method.lower()]
        schemes = [name for requirement in declared["security"] for name in requirement]
        return _placeholder(schemes[0]) if schemes else None

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = data


def call(case: schemathesis.Case) -> schemathesis.Response:
    """Send the case with real credentials in place of the placeholder; run every check."""
    sent = case.headers.get("Authorization")
    real = {_placeholder(scheme): header for scheme, header in CREDENTIALS.items()}
    if sent in real:
        case.headers["Authorization"] = real[sent]

    return case.call_and_validate(checks=FUZZ_CHECKS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("openapi") / "state"
    running = LocalStack(state, api_port=API_PORT).start()
    yield running
    assert running.stop() == 0, "\n".join(running.output[-30:])


@pytest.fixture(scope="module")
def broker(stack: LocalStack) -> Iterator[httpx.Client]:
    with stack.broker() as client:
        yield client


@pytest.fixture(scope="module")
def credentials(stack: LocalStack, broker: httpx.Client) -> Iterator[None]:
    """A running, bound instance; its publisher credentials and the broker's to fuzz with."""
    created = broker.post("/resources", data={"name": FUZZ_INSTANCE, "team": "t",
                                              "user": "fuzz@example.com"})
    assert created.status_code == 201, created.text
    stack.wait_for_status(broker, FUZZ_INSTANCE, 204)

    bound = broker.post(f"/resources/{FUZZ_INSTANCE}/bind-app", data={"app-name": "fuzz-app"})
    assert bound.status_code == 201, bound.text

    env = bound.json()
    CREDENTIALS["brokerAuth"] = _basic("pushaas", stack.broker_password())
    CREDENTIALS["publisherAuth"] = _basic(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"])
    yield
    CREDENTIALS.clear()


@pytest.fixture(scope="module")
def remove_created(
    broker: httpx.Client,
) -> Callable[[schemathesis.Case, schemathesis.Response], None]:
    """Remove each instance a fuzz case created, so the stack does not run dozens."""

    def remove(case: schemathesis.Case, response: schemathesis.Response) -> None:
        if (case.method, case.path) != ("POST", "/resources") or response.status_code != 201:
            return
        assert isinstance(case.body, dict)
        assert broker.delete(f"/resources/{case.body['name']}").status_code == 200

    return remove


# DELETE /resources/{name} would remove the fuzz instance whose credentials every push-api
# case uses (they would all turn 401), so it runs in its own test, defined last: pytest
# runs a module's tests in order.
@FUZZ_SCHEMA.exclude(method="DELETE", path="/resources/{name}").parametrize()
@pytest.mark.timeout(60)
def test_fuzz_operation(case: schemathesis.Case, credentials: None,
                        remove_created: Callable) -> None:
    remove_created(case, call(case))


@FUZZ_SCHEMA.include(method="DELETE", path="/resources/{name}").parametrize()
@pytest.mark.timeout(60)
def test_fuzz_instance_removal_last(case: schemathesis.Case, credentials: None) -> None:
    call(case)
