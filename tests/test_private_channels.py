"""Private channels: the token format, the authorizer, nginx + Nchan refusing a subscriber
before anything is delivered, and the issuing route in-process and through the stack.

The nginx tests run a real replica with a real ``python -m push_agent.authorizer`` beside
it. Refused subscriptions ask for a replay of the whole buffer (``last_event_id=1:0``)
while the channel holds messages, so a subscriber let through for even a moment would
receive them at once.
"""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chalicelib import keys, subscribe_tokens
from chalicelib.credentials import subscribe_key
from chalicelib.envelope import envelope
from chalicelib.subscribe_tokens import TokenError
from tests.agent_helpers import REPLAY_ALL
from tests.api import MASTER_KEY, basic, body, running_instance
from tests.authorizer import AuthorizerProcess
from tests.nginx import NginxReplica, load_render
from tests.stack import LocalStack
from tests.subscribers import EVENT_STREAM, EventReader

from push_agent import authorizer as authorizer_module  # isort: skip

pytestmark = pytest.mark.timeout(30)

INSTANCE = "mypush"
KEY = subscribe_key(MASTER_KEY, INSTANCE, "0123456789abcdef")
OTHER_KEY = subscribe_key(MASTER_KEY, "other", "fedcba9876543210")
LOCATIONS = ["ev", "ws", "lp", "sub"]
READ_TIMEOUT = 5.0


def token(channels: list[str], ttl: int = 60, key: str = KEY, instance: str = INSTANCE) -> str:
    return subscribe_tokens.issue(key, instance, channels, int(time.time()) + ttl)


def entry(n: int, channel: str) -> bytes:
    return envelope(f"1700000000{n:03d}-0", channel, f"message {n} on {channel}")


# ---- the token format -----------------------------------------------------------------

def test_a_token_is_url_safe_and_grants_its_channels() -> None:
    issued = token(["private-a", "private-b"])

    claims = subscribe_tokens.verify(KEY, INSTANCE, issued, time.time())

    assert claims.channels == ("private-a", "private-b")
    assert claims.expires > time.time()
    assert set(issued) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert subscribe_tokens.signature_of(issued) in issued


def _tamper_signature(issued: str) -> str:
    head, signature = issued.rsplit(".", 1)
    flipped = "A" if signature[0] != "A" else "B"
    return f"{head}.{flipped}{signature[1:]}"


def _swap_payload(issued: str) -> str:
    """This token's signature on the payload of a token for other channels."""
    other = token(["private-everything"]).split(".")[1]
    version, _, signature = issued.split(".")
    return f"{version}.{other}.{signature}"


@pytest.mark.parametrize(("forge", "reason"), [
    (_tamper_signature, "signature"),
    (_swap_payload, "signature"),
    (lambda t: t[:-1], "malformed"),
    (lambda t: "v2" + t[2:], "malformed"),
    (lambda t: t + ".x", "malformed"),
    (lambda t: t + "=", "malformed"),
    (lambda t: " " + t, "malformed"),
    (lambda t: t.replace(".", "%2E"), "malformed"),
    (lambda t: "v1." + "A" * 5000 + "." + t.rsplit(".", 1)[1], "malformed"),
    (lambda t: "\u00e9" + t, "malformed"),
    (lambda t: "", "missing"),
], ids=["signature", "payload", "truncated", "version", "extra", "padding", "space",
        "encoded", "huge", "non-ascii", "empty"])
def test_forged_tokens_are_refused(forge, reason: str) -> None:
    with pytest.raises(TokenError) as refused:
        subscribe_tokens.verify(KEY, INSTANCE, forge(token(["private-a"])), time.time())
    assert refused.value.reason == reason


@pytest.mark.parametrize(("key", "instance"), [(OTHER_KEY, INSTANCE), (KEY, "other"),
                                               (OTHER_KEY, "other")])
def test_a_token_of_another_instance_or_key_is_refused(key: str, instance: str) -> None:
    """The instance is signed, so even a shared key would not carry a token across."""
    foreign = token(["private-a"], key=key, instance=instance)
    with pytest.raises(TokenError, match="signature"):
        subscribe_tokens.verify(KEY, INSTANCE, foreign, time.time())


def test_a_token_expires_at_its_expiry_second() -> None:
    issued = subscribe_tokens.issue(KEY, INSTANCE, ["private-a"], 1_000)

    assert subscribe_tokens.verify(KEY, INSTANCE, issued, 999.9).expires == 1_000
    with pytest.raises(TokenError, match="expired"):
        subscribe_tokens.verify(KEY, INSTANCE, issued, 1_000)


@pytest.mark.parametrize("payload", [b"[]", b'{"c": ["private-a"]}', b'{"c": "x", "e": 9e9}',
                                     b'{"c": ["private-a"], "e": true}', b"not json",
                                     b'{"c": [1], "e": 9999999999}'])
def test_a_genuine_signature_on_a_bad_payload_is_still_refused(payload: bytes) -> None:
    """Only this module can sign, but the verifier does not trust its own format blindly."""
    encoded = subscribe_tokens._b64(payload)
    forged = f"v1.{encoded}.{subscribe_tokens._signature(KEY, INSTANCE, encoded)}"
    with pytest.raises(TokenError, match="malformed"):
        subscribe_tokens.verify(KEY, INSTANCE, forged, time.time())


def test_the_token_must_cover_every_private_channel_only() -> None:
    issued = token(["private-a"])
    now = time.time()

    subscribe_tokens.authorize(KEY, INSTANCE, issued, ["news", "private-a"], now)
    subscribe_tokens.authorize(KEY, INSTANCE, None, ["news", "Private-a"], now)
    with pytest.raises(TokenError, match="channel"):
        subscribe_tokens.authorize(KEY, INSTANCE, issued, ["private-a", "private-b"], now)
    with pytest.raises(TokenError, match="missing"):
        subscribe_tokens.authorize(KEY, INSTANCE, None, ["news", "private-a"], now)


@pytest.mark.parametrize("channels", [[], [f"private-{i}" for i in range(17)], ["private-a/b"],
                                      [""], ["private-" + "x" * 4000]])
def test_issue_refuses_what_no_verifier_would_accept(channels: list[str]) -> None:
    with pytest.raises(ValueError):
        subscribe_tokens.issue(KEY, INSTANCE, channels, 2_000_000_000)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=200) | st.from_regex(r"v1\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{43}",
                                                   fullmatch=True))
def test_verify_only_ever_refuses_with_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        subscribe_tokens.verify(KEY, INSTANCE, text, time.time())


# ---- the authorizer, in-process --------------------------------------------------------

def authorize_request(channels: str | None, auth: str | None) -> authorizer_module.Request:
    headers = {}
    if channels is not None:
        headers["x-push-channels"] = channels
    if auth is not None:
        headers["x-push-token"] = auth
    return authorizer_module.Request("GET", "/authorize", headers)


def test_authorizer_decides_and_counts_without_the_token() -> None:
    settings_ = authorizer_module.AuthorizerSettings(INSTANCE, 9082, KEY)
    decider = authorizer_module.Authorizer(settings_)
    good = token(["private-a"])
    now = time.time()

    assert decider.answer(authorize_request("news/private-a", good), now) == 204
    assert decider.answer(authorize_request("private-a", None), now) == 403
    assert decider.answer(authorize_request("private-b", good), now) == 403
    assert decider.answer(authorize_request(None, good), now) == 403
    assert decider.answer(authorize_request("private-a", good), now + 61) == 403

    summary = decider.summary()
    assert summary == "allowed=1 channel=1 expired=1 missing=1 no_channels=1"
    assert decider.summary() is None
    assert KEY not in repr(settings_)


@pytest.mark.parametrize("head", [
    b"GET /authorize HTTP/2\r\n\r\n",
    b"GET /authorize\r\n\r\n",
    b"POST /authorize HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
    b"GET /authorize HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /authorize HTTP/1.1\r\nno colon\r\n\r\n",
])
def test_authorizer_refuses_what_nginx_never_sends(head: bytes) -> None:
    with pytest.raises(ValueError):
        authorizer_module.parse_head(head)


@pytest.mark.parametrize("env", [
    {"PUSHAAS_INSTANCE": INSTANCE},
    {"PUSHAAS_INSTANCE": INSTANCE, "PUSHAAS_SUBSCRIBE_KEY": "short-but-secret"},
    {"PUSHAAS_INSTANCE": "Bad Name", "PUSHAAS_SUBSCRIBE_KEY": KEY},
    {"PUSHAAS_INSTANCE": INSTANCE, "PUSHAAS_SUBSCRIBE_KEY": KEY, "PUSHAAS_AUTHORIZER_PORT": "0"},
    {"PUSHAAS_INSTANCE": INSTANCE, "PUSHAAS_SUBSCRIBE_KEY": KEY, "PUSHAAS_LOG_LEVEL": "LOUD"},
])
def test_authorizer_settings_name_the_variable_not_the_secret(env: dict[str, str]) -> None:
    with pytest.raises(authorizer_module.SettingError) as bad:
        authorizer_module.AuthorizerSettings.from_env(env)
    assert "PUSHAAS_" in str(bad.value)
    assert KEY not in str(bad.value) and "short-but-secret" not in str(bad.value)


# ---- nginx + Nchan + the authorizer ----------------------------------------------------

@pytest.fixture
def authorizer(tmp_path: Path) -> Iterator[AuthorizerProcess]:
    with AuthorizerProcess(tmp_path, INSTANCE, KEY) as process:
        yield process


@pytest.fixture
def replica(tmp_path: Path, authorizer: AuthorizerProcess) -> Iterator[NginxReplica]:
    """A replica asking ``authorizer``; a worker that crashed meanwhile fails the test
    (nginx would respawn it, and the subscriber would only see a dropped connection)."""
    with NginxReplica(tmp_path, buffer_length=10, env=authorizer.replica_env()) as server:
        yield server
    assert "exited on signal" not in server.log_path.read_text()


def subscriber_url(base: str, location: str, channels: list[str], auth: str | None,
                   replay: bool = False) -> str:
    query = {"auth": auth} if auth is not None else {}
    if replay:
        query["last_event_id"] = REPLAY_ALL
    url = f"{base}/{location}/{'/'.join(channels)}"
    return f"{url}?{urlencode(query)}" if query else url


def attempt(base: str, location: str, channels: list[str], auth: str | None) -> tuple[int, bytes]:
    """Subscribe asking for the whole buffer; the status and what arrived within a moment."""
    url = subscriber_url(base, location, channels, auth, replay=True)
    if location == "ws":
        try:
            with connect(url.replace("http://", "ws://"), open_timeout=READ_TIMEOUT) as ws:
                return 101, ws.recv(timeout=1).encode()
        except InvalidStatus as refused:
            return refused.response.status_code, refused.response.body or b""

    headers = EVENT_STREAM if location == "ev" else {}
    with httpx.stream("GET", url, headers=headers, timeout=READ_TIMEOUT) as response:
        if response.status_code != 200:
            return response.status_code, response.read()
        if location == "ev":
            return 200, EventReader(response).next()[1]
        return 200, next(response.iter_raw(), b"")


def deliver(replica: NginxReplica, location: str, channels: list[str], auth: str | None,
            channel: str, body: bytes) -> bytes:
    """Subscribe, publish ``body`` on ``channel`` once attached, return what arrived."""
    url = subscriber_url(replica.public_url, location, channels, auth)
    if location == "ws":
        with connect(url.replace("http://", "ws://"), open_timeout=READ_TIMEOUT) as ws:
            replica.wait_for_subscribers(channel)
            replica.publish(channel, body)
            return ws.recv(timeout=READ_TIMEOUT).encode()

    if location == "lp":
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(httpx.get, url, timeout=READ_TIMEOUT)
            replica.wait_for_subscribers(channel)
            replica.publish(channel, body)
            response = poll.result(READ_TIMEOUT)
        assert response.status_code == 200
        return response.content

    headers = EVENT_STREAM if location == "ev" else {}
    with httpx.stream("GET", url, headers=headers, timeout=READ_TIMEOUT) as response:
        assert response.status_code == 200
        replica.wait_for_subscribers(channel)
        replica.publish(channel, body)
        if location == "ev":
            return EventReader(response).next()[1]
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if b"\n" in received:
                return received.rstrip(b"\n")
    raise AssertionError("the stream ended before the message")


def _expired() -> str:
    return subscribe_tokens.issue(KEY, INSTANCE, ["private-a"], int(time.time()) - 1)


BAD_TOKENS = {
    "missing": lambda: None,
    "empty": lambda: "",
    "forged": lambda: _tamper_signature(token(["private-a"])),
    "expired": _expired,
    "other-channel": lambda: token(["private-b"]),
    "other-instance": lambda: token(["private-a"], key=OTHER_KEY, instance="other"),
    "garbage": lambda: "not-a-token",
}


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_is_refused_before_any_message(replica: NginxReplica, location: str,
                                                   case: str) -> None:
    for n in range(3):
        assert replica.publish("private-a", entry(n, "private-a")).status_code in (201, 202)

    status, received = attempt(replica.public_url, location, ["private-a"], BAD_TOKENS[case]())

    assert status == 403
    assert b"message" not in received
    assert replica.subscribers("private-a") == 0
    # 202, not 201: Nchan says the message found no subscriber to deliver to.
    assert replica.publish("private-a", entry(9, "private-a")).status_code == 202


@pytest.mark.parametrize("location", LOCATIONS)
def test_a_valid_token_lets_messages_flow(replica: NginxReplica, location: str) -> None:
    body_ = entry(1, "private-a")

    received = deliver(replica, location, ["private-a"], token(["private-a"]), "private-a", body_)

    assert received == body_


def test_a_valid_token_replays_the_buffer_a_refused_one_never_saw(replica: NginxReplica) -> None:
    replica.publish("private-a", entry(1, "private-a"))

    status, received = attempt(replica.public_url, "sub", ["private-a"], token(["private-a"]))

    assert status == 200
    assert received.rstrip(b"\n") == entry(1, "private-a")


@pytest.mark.parametrize(("channels", "granted", "allowed"), [
    (["news"], None, True),
    (["news"], ["private-z"], True),
    (["news", "private-a"], ["private-a"], True),
    (["private-a", "news"], ["private-a", "private-b"], True),
    (["news", "private-a", "private-b"], ["private-a", "private-b"], True),
    (["news", "private-a", "private-b"], ["private-a"], False),
    (["news", "private-a"], None, False),
    (["news", "private-a"], ["news"], False),
])
def test_a_subscription_mixing_public_and_private_channels(
    replica: NginxReplica, channels: list[str], granted: list[str] | None, allowed: bool,
) -> None:
    auth = token(granted) if granted else None
    for channel in channels:
        replica.publish(channel, entry(1, channel))

    status, received = attempt(replica.public_url, "ev", channels, auth)

    if allowed:
        assert status == 200 and b"message 1" in received
    else:
        assert status == 403 and b"message" not in received


def test_a_percent_encoded_private_channel_is_still_private(replica: NginxReplica) -> None:
    """nginx matches and Nchan subscribes the decoded path: both see "private-a"."""
    replica.publish("private-a", entry(1, "private-a"))

    refused, _ = attempt(replica.public_url, "ev", ["%70rivate-a"], None)
    allowed, received = attempt(replica.public_url, "ev", ["%70rivate%2Da"],
                                token(["private-a"]))

    assert refused == 403
    assert allowed == 200 and b"message 1" in received


def test_client_headers_cannot_pose_as_the_authorizer_input(replica: NginxReplica) -> None:
    granted = token(["private-a"])
    url = subscriber_url(replica.public_url, "ev", ["private-b"], None)
    spoofed = {**EVENT_STREAM, "X-Push-Channels": "private-a", "X-Push-Token": granted}

    assert httpx.get(url, headers=spoofed, timeout=READ_TIMEOUT).status_code == 403


@pytest.mark.parametrize("location", LOCATIONS)
def test_without_an_authorizer_private_channels_are_refused(tmp_path: Path,
                                                            location: str) -> None:
    with NginxReplica(tmp_path) as bare:
        bare.publish("news", entry(1, "news"))
        bare.publish("private-a", entry(1, "private-a"))
        private, refused = attempt(bare.public_url, location, ["private-a"],
                                   token(["private-a"]))
        public, received = attempt(bare.public_url, location, ["news"], None)

    assert private == 403 and b"message" not in refused
    assert public in (101, 200) and b"message 1" in received
    assert "exited on signal" not in bare.log_path.read_text()


def test_an_unreachable_authorizer_fails_closed_and_logs_no_token(
    replica: NginxReplica, authorizer: AuthorizerProcess,
) -> None:
    authorizer.stop()
    granted = token(["private-a"])
    replica.publish("news", entry(1, "news"))

    private, _ = attempt(replica.public_url, "ev", ["private-a"], granted)
    public, received = attempt(replica.public_url, "ev", ["news"], None)

    assert private == 502
    assert public == 200 and b"message 1" in received
    assert subscribe_tokens.signature_of(granted) not in replica.log_path.read_text()


def test_the_authorizer_logs_no_token(replica: NginxReplica, authorizer: AuthorizerProcess) -> None:
    granted = token(["private-a"])
    attempt(replica.public_url, "ev", ["private-a"], _tamper_signature(granted))
    deliver(replica, "lp", ["private-a"], granted, "private-a", entry(1, "private-a"))

    assert authorizer.stop() == 0
    logged = authorizer.log_path.read_text()
    assert "authorizer stopped instance=mypush allowed=1 signature=1" in logged
    assert subscribe_tokens.signature_of(granted) not in logged


def test_the_authorizer_health_command_follows_the_process(tmp_path: Path) -> None:
    authorizer = AuthorizerProcess(tmp_path, INSTANCE, KEY).start()
    command = [sys.executable, "-m", "push_agent.authorizer", "health"]
    try:
        up = subprocess.run(command, env=authorizer.env(), capture_output=True, timeout=10)
    finally:
        authorizer.stop()
    down = subprocess.run(command, env=authorizer.env(), capture_output=True, timeout=10)

    assert (up.returncode, down.returncode) == (0, 1)


def test_the_authorizer_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    process = AuthorizerProcess(tmp_path, INSTANCE, "")
    with pytest.raises(RuntimeError, match="PUSHAAS_SUBSCRIBE_KEY"):
        process.start()


@pytest.mark.parametrize("with_authorizer", [False, True], ids=["refusing", "authorizing"])
def test_replica_config_gates_every_subscriber_location(tmp_path: Path,
                                                        with_authorizer: bool) -> None:
    env = {"PUSH_STREAM_RUN_DIR": str(tmp_path)}
    if with_authorizer:
        env["PUSH_STREAM_AUTHORIZER_PORT"] = "9082"
    text = load_render().render_replica(env)

    gate = "nchan_authorize_request /_authorize;" if with_authorizer else "return 403;"
    for location in LOCATIONS:
        private = text.index(f'location ~ "^/{location}/((?:[^/]+/)*private-')
        public = text.index(f'location ~ "^/{location}/([^/]+')
        assert private < public, "the private location must be matched first"
        assert gate in text[private:public].split("}")[0]
    assert text.count(gate) == len(LOCATIONS)
    assert ("server 127.0.0.1:9082;" in text) == with_authorizer


@pytest.mark.parametrize("port", ["9080", "9081", "http"])
def test_render_rejects_a_clashing_authorizer_port(tmp_path: Path, port: str) -> None:
    render = load_render()
    with pytest.raises(render.SettingError, match="PUSH_STREAM_AUTHORIZER_PORT"):
        render.render_replica({"PUSH_STREAM_RUN_DIR": str(tmp_path),
                               "PUSH_STREAM_AUTHORIZER_PORT": port})


# ---- the issuing route, in-process -----------------------------------------------------

@pytest.fixture
def publisher(client) -> dict[str, str]:
    env = running_instance(client)
    return {**basic(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"]),
            "Content-Type": "application/json"}


def issue(client, headers: dict[str, str], payload: object):
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return client.http.post("/api/v1/tokens", headers=headers, body=raw)


def test_the_route_issues_a_token_the_instance_key_verifies(client, publisher,
                                                            redis_client) -> None:
    before = time.time()
    issued = issue(client, publisher, {"channels": ["private-a", "private-a", "private-b"],
                                       "ttl": 120})

    assert issued.status_code == 201
    answer = body(issued)
    assert set(answer) == {"token", "expires", "channels"}
    assert answer["channels"] == ["private-a", "private-b"]

    salt = redis_client.hget(keys.instance(INSTANCE), "salt")
    claims = subscribe_tokens.verify(subscribe_key(MASTER_KEY, INSTANCE, salt), INSTANCE,
                                     answer["token"], time.time())
    assert claims.channels == ("private-a", "private-b")
    assert before + 119 <= claims.expires <= time.time() + 120
    assert answer["expires"].endswith("Z")


def test_the_route_defaults_to_an_hour(client, publisher) -> None:
    answer = body(issue(client, publisher, {"channels": ["private-a"]}))
    claims = subscribe_tokens._claims(answer["token"].split(".")[1])
    assert abs(claims.expires - (time.time() + 3600)) < 5


@pytest.mark.parametrize("payload", [
    "not json", "[]", {}, {"channels": []}, {"channels": "private-a"},
    {"channels": ["news"]}, {"channels": ["private-a", "news"]}, {"channels": ["private a"]},
    {"channels": [7]}, {"channels": [f"private-{i}" for i in range(17)]},
    {"channels": ["private-a"], "ttl": 0}, {"channels": ["private-a"], "ttl": -1},
    {"channels": ["private-a"], "ttl": 86401}, {"channels": ["private-a"], "ttl": 1.5},
    {"channels": ["private-a"], "ttl": "60"}, {"channels": ["private-a"], "ttl": True},
    {"channels": ["private-a"], "ttl": None},
], ids=lambda p: json.dumps(p)[:40])
def test_the_route_refuses_bad_input(client, publisher, payload: object) -> None:
    refused = issue(client, publisher, payload)

    assert refused.status_code == 400
    assert body(refused)["code"] == 400 and body(refused)["message"]


def test_the_route_needs_publisher_credentials(client, publisher) -> None:
    payload = {"channels": ["private-a"]}
    assert issue(client, {"Content-Type": "application/json"}, payload).status_code == 401
    wrong = {**basic(INSTANCE, "not-the-secret"), "Content-Type": "application/json"}
    assert issue(client, wrong, payload).status_code == 401


def test_tokens_of_two_instances_do_not_cross(client, publisher, redis_client) -> None:
    other_env = running_instance(client, name="other")
    other = {**basic(other_env["PUSHAAS_USERNAME"], other_env["PUSHAAS_PASSWORD"]),
             "Content-Type": "application/json"}
    mine = body(issue(client, publisher, {"channels": ["private-a"]}))["token"]
    theirs = body(issue(client, other, {"channels": ["private-a"]}))["token"]

    salt = redis_client.hget(keys.instance(INSTANCE), "salt")
    key = subscribe_key(MASTER_KEY, INSTANCE, salt)
    subscribe_tokens.verify(key, INSTANCE, mine, time.time())
    with pytest.raises(TokenError, match="signature"):
        subscribe_tokens.verify(key, INSTANCE, theirs, time.time())


# ---- through the running stack ---------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("private") / "state").start()
    yield running
    assert running.stop() == 0, "\n".join(running.output[-30:])


def provision(stack: LocalStack, name: str) -> dict[str, str]:
    with stack.broker() as broker:
        created = broker.post("/resources", data={"name": name, "team": "t", "user": "u@x"})
        assert created.status_code == 201, created.text
        stack.wait_for_status(broker, name, 204)
        bound = broker.post(f"/resources/{name}/bind-app", data={"app-name": f"{name}-app"})
    assert bound.status_code == 201, bound.text
    return bound.json()


def publisher_client(env: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=env["PUSHAAS_ENDPOINT"], timeout=10, trust_env=False,
                        auth=(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"]))


def wait_for_subscribers(stack: LocalStack, name: str, channel: str) -> None:
    record = json.loads(stack.redis().hget(keys.replicas(name), "0") or "{}")
    url = f"http://127.0.0.1:{record['internal']}/pub?id={channel}"
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        info = httpx.get(url, headers={"Accept": "application/json"}, trust_env=False)
        if info.status_code == 200 and info.json()["subscribers"] > 0:
            return
        assert time.monotonic() < deadline, f"no subscriber on {channel}"
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_a_token_from_the_api_opens_a_private_channel_of_its_instance_only(
    stack: LocalStack,
) -> None:
    mine, theirs = provision(stack, "private-one"), provision(stack, "private-two")
    with publisher_client(mine) as api, publisher_client(theirs) as other_api:
        issued = api.post("/api/v1/tokens", json={"channels": ["private-room"], "ttl": 60})
        foreign = other_api.post("/api/v1/tokens", json={"channels": ["private-room"]})
        assert issued.status_code == 201 and foreign.status_code == 201, issued.text
        granted = issued.json()["token"]
        stream_url = mine["PUSHAAS_PUSH_STREAM_URL"]

        for auth in (None, foreign.json()["token"], _tamper_signature(granted)):
            status, received = attempt(stream_url, "ev", ["news", "private-room"], auth)
            assert (status, received) == (403, b"")

        url = subscriber_url(stream_url, "ev", ["news", "private-room"], granted)
        with httpx.stream("GET", url, headers=EVENT_STREAM, timeout=READ_TIMEOUT,
                          trust_env=False) as response:
            assert response.status_code == 200
            wait_for_subscribers(stack, "private-one", "private-room")
            sent = api.post("/api/v1/messages",
                            json={"channels": ["private-room"], "content": "for members"})
            assert sent.status_code == 201, sent.text

            delivered = json.loads(EventReader(response).next()[1])
    assert delivered["channel"] == "private-room" and delivered["text"] == "for members"
