"""The push-api, in-process with real Redis: the JS client's calls, limits, isolation."""

import json
import time
from dataclasses import replace

import pytest

from chalicelib import keys
from tests.api import basic, body, running_instance


@pytest.fixture
def publisher(client):
    env = running_instance(client)
    return {**basic(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"]),
            "Content-Type": "application/json"}


def post(client, path, headers, payload):
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return client.http.post(path, headers=headers, body=raw)


def test_healthcheck_needs_no_auth(client):
    assert client.http.get("/api/healthcheck").status_code == 200


def test_auth_route(client, publisher):
    assert client.http.get("/api/v1/auth", headers=publisher).status_code == 200
    wrong = basic("mypush", "not-the-secret")
    assert client.http.get("/api/v1/auth", headers=wrong).status_code == 401
    assert client.http.get("/api/v1/auth").status_code == 401


def test_javascript_client_ensure_channel_then_post_message(client, publisher, redis_client):
    # ensureChannel: GET -> 404 -> POST {id, ttl: 0}
    assert client.http.get("/api/v1/channels/news", headers=publisher).status_code == 404
    created = post(client, "/api/v1/channels", publisher, {"ttl": 0, "id": "news"})
    assert created.status_code == 201
    fetched = client.http.get("/api/v1/channels/news", headers=publisher)
    assert body(fetched)["id"] == "news" and body(fetched)["ttl"] == 0

    # postMessage
    sent = post(client, "/api/v1/messages", publisher, {"channels": ["news"], "content": "hi"})
    assert sent.status_code == 201
    entry_id = body(sent)["id"]
    [(stored_id, fields)] = redis_client.xrange(keys.stream("mypush"))
    assert stored_id == entry_id and fields["t"] == "hi"

    # getChannels, getConfig, stats
    assert [c["id"] for c in body(client.http.get("/api/v1/channels", headers=publisher))] \
        == ["news"]
    config = body(client.http.get("/api/v1/config", headers=publisher))
    assert config["pushStream"]["url"].startswith("http://127.0.0.1")
    assert config["pushStream"]["hostname"] == "127.0.0.1" and config["pushStream"]["port"]
    stats = body(client.http.get("/api/v1/stats/global", headers=publisher))
    assert set(stats) == {"aggregated", "all"}
    channel = client.http.get("/api/v1/stats/channels/news", headers=publisher)
    assert channel.status_code == 200 and "subscribers" in body(channel)["aggregated"]

    # deleteChannel
    assert client.http.delete("/api/v1/channels/news", headers=publisher).status_code == 204
    assert client.http.delete("/api/v1/channels/news", headers=publisher).status_code == 404


def test_percent_encoded_channel_ids_in_the_path(client, publisher):
    """What JavaScript's encodeURIComponent sends for ``user:42``."""
    post(client, "/api/v1/channels", publisher, {"id": "user:42", "ttl": 0})

    fetched = client.http.get("/api/v1/channels/user%3A42", headers=publisher)
    assert fetched.status_code == 200 and body(fetched)["id"] == "user:42"
    stats = client.http.get("/api/v1/stats/channels/user%3A42", headers=publisher)
    assert stats.status_code == 200
    assert client.http.delete("/api/v1/channels/user%3a42", headers=publisher).status_code == 204
    assert client.http.get("/api/v1/channels/user:42", headers=publisher).status_code == 404


def test_a_damaged_channel_record_is_left_out(client, publisher, redis_client):
    for channel in ("good", "bad", "list"):
        post(client, "/api/v1/channels", publisher, {"id": channel, "ttl": 0})
    redis_client.set(keys.channel("mypush", "bad"), "not json")
    redis_client.set(keys.channel("mypush", "list"), "[1, 2]")

    listing = client.http.get("/api/v1/channels", headers=publisher)

    assert listing.status_code == 200 and [c["id"] for c in body(listing)] == ["good"]
    assert client.http.get("/api/v1/channels/bad", headers=publisher).status_code == 404


def test_damaged_agent_reports_are_skipped_in_channel_stats(client, publisher, redis_client):
    now = time.time()
    redis_client.zadd(keys.agents("mypush"), {"good": now, "wrongtype": now, "garbage": now})
    redis_client.hset(keys.channel_stats("mypush", "good"), "news",
                      json.dumps({"subscribers": 3, "published_messages": 5}))
    redis_client.set(keys.channel_stats("mypush", "wrongtype"), "a string")
    redis_client.hset(keys.channel_stats("mypush", "garbage"), "news", "not json")

    reply = client.http.get("/api/v1/stats/channels/news", headers=publisher)

    assert reply.status_code == 200
    assert body(reply)["aggregated"] == {"subscribers": 3, "published_messages": 5}


def test_channel_ttl_expires(client, publisher, redis_client):
    post(client, "/api/v1/channels", publisher, {"id": "brief", "ttl": 30})

    assert 0 < redis_client.ttl(keys.channel("mypush", "brief")) <= 30
    assert redis_client.ttl(keys.channel("mypush", "news")) == -2
    assert post(client, "/api/v1/channels", publisher,
                {"id": "brief", "ttl": 1}).status_code == 409


@pytest.mark.parametrize("payload, status", [
    ("{", 400),
    ("", 400),
    ("[]", 400),
    ({"content": "x"}, 400),
    ({"channels": [], "content": "x"}, 400),
    ({"channels": "news", "content": "x"}, 400),
    ({"channels": ["ok", "bad/id"], "content": "x"}, 400),
    ({"channels": ["x" * 129], "content": "x"}, 400),
    ({"channels": [7], "content": "x"}, 400),
    ({"channels": ["news"]}, 400),
    ({"channels": ["news"], "content": ""}, 400),
    ({"channels": ["news"], "content": {"a": 1}}, 400),
    ({"channels": ["news"], "content": "x" * 32769}, 413),
    ({"channels": [f"c{i}" for i in range(101)], "content": "x"}, 400),
    ('{"channels": ["news"], "content": "\\ud800"}', 400),
    ('{"channels": ["news"], "content": "x", "n": NaN}', 400),
    ('{"channels": ["news"], "content": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
     400),
])
def test_bad_messages_get_4xx_and_append_nothing(client, publisher, redis_client,
                                                  payload, status):
    response = post(client, "/api/v1/messages", publisher, payload)

    assert response.status_code == status
    assert body(response)["code"] == status and body(response)["message"]
    assert redis_client.xlen(keys.stream("mypush")) == 0


@pytest.mark.parametrize("payload", ["{", "[]", {"ttl": 0}, {"id": "a b"}, {"id": "x", "ttl": -1},
                                     {"id": "x", "ttl": "10"}, {"id": "x", "ttl": True},
                                     {"id": "x", "ttl": 1.5}])
def test_bad_channels_get_400_and_create_nothing(client, publisher, redis_client, payload):
    response = post(client, "/api/v1/channels", publisher, payload)

    assert response.status_code == 400
    assert redis_client.zcard(keys.channel_index("mypush")) == 0


def test_idempotency_key_returns_the_same_id(client, publisher, redis_client):
    headers = {**publisher, "Idempotency-Key": "order-42"}
    message = {"channels": ["news"], "content": "once"}

    first = post(client, "/api/v1/messages", headers, message)
    second = post(client, "/api/v1/messages", headers, message)

    assert body(first)["id"] == body(second)["id"]
    assert redis_client.xlen(keys.stream("mypush")) == 1


def test_isolation_between_instances(client, redis_client):
    env_a = running_instance(client, "alpha")
    env_b = running_instance(client, "beta")
    a = {**basic("alpha", env_a["PUSHAAS_PASSWORD"]), "Content-Type": "application/json"}
    cross = {**basic("beta", env_a["PUSHAAS_PASSWORD"]), "Content-Type": "application/json"}
    post(client, "/api/v1/channels", a, {"id": "secret", "ttl": 0})

    assert env_a["PUSHAAS_PASSWORD"] != env_b["PUSHAAS_PASSWORD"]
    for method, path in [("get", "/api/v1/channels"), ("get", "/api/v1/channels/secret"),
                         ("get", "/api/v1/stats/global"), ("get", "/api/v1/config"),
                         ("get", "/api/v1/stats/channels/secret"),
                         ("delete", "/api/v1/channels/secret"), ("get", "/api/v1/auth")]:
        assert getattr(client.http, method)(path, headers=cross).status_code == 401, path
    for path, payload in [("/api/v1/channels", {"id": "x", "ttl": 0}),
                          ("/api/v1/tokens", {"channels": ["private-secret"]})]:
        assert post(client, path, cross, payload).status_code == 401, path
    assert post(client, "/api/v1/messages", cross,
                {"channels": ["secret"], "content": "x"}).status_code == 401
    assert redis_client.xlen(keys.stream("beta")) == 0
    b = {**basic("beta", env_b["PUSHAAS_PASSWORD"])}
    assert body(client.http.get("/api/v1/channels", headers=b)) == []


def test_redis_down_gives_fast_503(client, publisher, monkeypatch):
    from chalicelib import services

    svc = services.current()
    broken = type(svc.redis).from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(svc, "redis", broken)
    monkeypatch.setattr(svc.store, "redis", broken)

    response = post(client, "/api/v1/messages", publisher, {"channels": ["a"], "content": "x"})

    assert response.status_code == 503
    assert body(response)["code"] == 503


@pytest.mark.parametrize("method, path, content_type, status", [
    ("post", "/api/v1/messages", "application/xml", 415),
    ("put", "/api/v1/messages", "application/json", 405),
    ("post", "/resources", "text/csv", 415),
])
def test_framework_errors_have_the_same_json_shape(client, method, path, content_type, status):
    response = getattr(client.http, method)(path, headers={"Content-Type": content_type},
                                            body="x")

    assert response.status_code == status
    assert body(response)["code"] == status and body(response)["message"]


def test_publish_waits_for_replicas_when_asked(client, publisher, redis_client, monkeypatch):
    from chalicelib import services

    svc = services.current()
    monkeypatch.setattr(svc, "settings", replace(svc.settings, redis_min_replicas=1))

    response = post(client, "/api/v1/messages", {**publisher, "Idempotency-Key": "k1"},
                    {"channels": ["news"], "content": "x"})

    # The test Redis has no replica: the entry is stored, the publisher is told to retry.
    assert response.status_code == 503
    assert "Idempotency-Key" in body(response)["message"]
    assert redis_client.xlen(keys.stream("mypush")) == 1
    monkeypatch.setattr(svc, "settings", replace(svc.settings, redis_min_replicas=0))
    retried = post(client, "/api/v1/messages", {**publisher, "Idempotency-Key": "k1"},
                   {"channels": ["news"], "content": "x"})
    assert retried.status_code == 201 and redis_client.xlen(keys.stream("mypush")) == 1


@pytest.fixture
def tight_plan(client, publisher, monkeypatch):
    """The instance's plan with a publish rate of 2/s and room for 2 channels."""
    from chalicelib import services

    svc = services.current()
    plans = dict(svc.plans)
    plans["small"] = replace(plans["small"], publish_rate=2, max_channels=2)
    monkeypatch.setattr(svc, "plans", plans)
    return publisher


def test_publish_rate_limit_gives_429_with_retry_after(client, tight_plan, redis_client):
    message = {"channels": ["news"], "content": "x"}
    statuses = [post(client, "/api/v1/messages", tight_plan, message) for _ in range(3)]

    assert [r.status_code for r in statuses] == [201, 201, 429]
    assert 1 <= int(statuses[2].headers["Retry-After"]) <= 1
    assert body(statuses[2])["code"] == 429
    assert redis_client.xlen(keys.stream("mypush")) == 2


def test_channel_count_limit_of_the_plan(client, tight_plan, redis_client):
    for channel in ("a", "b"):
        assert post(client, "/api/v1/channels", tight_plan, {"id": channel}).status_code == 201

    third = post(client, "/api/v1/channels", tight_plan, {"id": "c"})

    assert third.status_code == 400 and "2 channels" in body(third)["message"]
    assert redis_client.zcard(keys.channel_index("mypush")) == 2
