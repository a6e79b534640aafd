"""The Tsuru broker, in-process, with real Redis and a fake provisioner."""

import json

import pytest
import redis

from chalicelib import keys
from chalicelib.instances import Instance, InstanceStore
from tests.api import BROKER, FORM, JSON, FakeProvisioner, basic, body, drain_jobs, running_instance


def test_plans_come_from_configuration(client):
    response = client.http.get("/resources/plans", headers=BROKER)

    assert response.status_code == 200
    assert [p["name"] for p in body(response)] == ["small", "medium", "large"]
    assert all(p["description"] for p in body(response))


@pytest.mark.parametrize("headers", [{}, basic("pushaas", "wrong"), basic("other", "broker"),
                                     {"Authorization": "Bearer x"},
                                     {"Authorization": "Basic !!!"}])
def test_broker_rejects_bad_credentials_and_changes_nothing(client, redis_client, headers):
    response = client.http.post("/resources", body="name=a&team=t&user=u",
                                headers={**headers, "Content-Type":
                                         "application/x-www-form-urlencoded"})

    assert response.status_code == 401
    assert body(response)["code"] == 401
    assert redis_client.keys("*") == []


def test_create_form_then_status_pending_then_running(client, redis_client):
    response = client.http.post(
        "/resources", headers=FORM,
        body="name=mypush&plan=medium&team=team1&user=me%40x.io&tags=a&tags=b"
             "&parameters.region=eu&eventid=1")

    assert response.status_code == 201
    assert client.http.get("/resources/mypush/status", headers=BROKER).status_code == 202
    record = redis_client.hgetall(keys.instance("mypush"))
    assert record["plan"] == "medium" and json.loads(record["tags"]) == ["a", "b"]

    assert drain_jobs(FakeProvisioner()) == 1
    assert client.http.get("/resources/mypush/status", headers=BROKER).status_code == 204


def test_create_json_camel_case(client, redis_client):
    payload = {"name": "jsonpush", "plan": "small", "team": "t", "user": "u",
               "eventID": "e1", "tags": ["x"], "parameters": {"k": "v"}}
    response = client.http.post("/resources", headers=JSON, body=json.dumps(payload))

    assert response.status_code == 201
    assert redis_client.hget(keys.instance("jsonpush"), "team") == "t"


@pytest.mark.parametrize("payload, expected", [
    ("name=Bad Name&team=t&user=u", 400),
    ("name=ok&team=t&user=u&plan=gigantic", 400),
    ("team=t&user=u", 400),
    ("name=ok&user=u", 400),
])
def test_create_rejects_bad_input(client, redis_client, payload, expected):
    response = client.http.post("/resources", headers=FORM, body=payload)

    assert response.status_code == expected
    assert body(response)["message"]
    assert redis_client.keys("*") == []


def test_create_rejects_malformed_json(client, redis_client):
    for raw in ["{", "[1]", json.dumps({"name": ["x"], "team": "t", "user": "u"}),
                '{"name": "s1", "plan": "small", "team": "t", "user": "\\ud800"}',
                '{"name": "s1", "plan": "small", "team": "t", "user": "u", "n": NaN}',
                "[" * 100_000 + "]" * 100_000]:
        response = client.http.post("/resources", headers=JSON, body=raw)
        assert response.status_code == 400, raw[:80]
        assert body(response)["code"] == 400
    assert redis_client.keys("*") == []

    # Nothing of the refused requests holds the name.
    valid = {"name": "s1", "plan": "small", "team": "t", "user": "u"}
    assert client.http.post("/resources", headers=JSON,
                            body=json.dumps(valid)).status_code == 201


def test_a_create_that_fails_half_way_releases_the_name(redis_client, monkeypatch):
    """Redis failing between reserving the name and writing the record."""
    store = InstanceStore(redis_client)

    def broken(*args, **kwargs):
        raise redis.ConnectionError("connection lost")

    monkeypatch.setattr(redis_client, "hset", broken)
    with pytest.raises(redis.ConnectionError):
        store.create(Instance(name="half", plan="small"))
    monkeypatch.undo()

    assert not redis_client.sismember(keys.INSTANCES, "half")
    assert store.create(Instance(name="half", plan="small")).name == "half"


def test_duplicate_name_is_409_and_keeps_the_first(client, redis_client):
    first = client.http.post("/resources", headers=FORM, body="name=dup&team=t1&user=u")
    second = client.http.post("/resources", headers=FORM, body="name=dup&team=t2&user=u")

    assert (first.status_code, second.status_code) == (201, 409)
    assert redis_client.hget(keys.instance("dup"), "team") == "t1"
    assert redis_client.llen(keys.JOBS) == 1


def test_failed_provisioning_is_500_with_reason(client):
    client.http.post("/resources", headers=FORM, body="name=broken&team=t&user=u")
    drain_jobs(FakeProvisioner(fail_with="nginx did not start: port in use"))

    status = client.http.get("/resources/broken/status", headers=BROKER)
    assert status.status_code == 500
    assert b"port in use" in status.body
    info = {i["label"]: i["value"] for i in body(client.http.get("/resources/broken",
                                                                  headers=BROKER))}
    assert info["Status"] == "failed" and "port in use" in info["Reason"]


def test_bind_before_running_is_412_and_unknown_is_404(client):
    client.http.post("/resources", headers=FORM, body="name=slow&team=t&user=u")

    pending = client.http.post("/resources/slow/bind-app", headers=FORM, body="app-name=a")
    unknown = client.http.post("/resources/nope/bind-app", headers=FORM, body="app-name=a")

    assert pending.status_code == 412
    assert unknown.status_code == 404


def test_bind_app_returns_env_and_is_idempotent(client, redis_client):
    env = running_instance(client)
    again = client.http.post("/resources/mypush/bind-app", headers=JSON,
                             body=json.dumps({"appName": "myapp", "appHosts": ["h"]}))

    assert set(env) == {"PUSHAAS_ENDPOINT", "PUSHAAS_USERNAME", "PUSHAAS_PASSWORD",
                        "PUSHAAS_PUSH_STREAM_URL"}
    assert env["PUSHAAS_ENDPOINT"] == "http://pushaas.test"
    assert env["PUSHAAS_USERNAME"] == "mypush"
    assert body(again) == env
    assert redis_client.hlen(keys.bindings("mypush")) == 1
    for key in redis_client.keys("*"):
        if redis_client.type(key) == "hash":
            assert env["PUSHAAS_PASSWORD"] not in json.dumps(redis_client.hgetall(key))


def test_unbind_unit_bind_and_job_bind(client, redis_client):
    env = running_instance(client)

    unit = client.http.post("/resources/mypush/bind", headers=FORM,
                            body="app-name=myapp&unit-host=10.0.0.1")
    job = client.http.put("/resources/mypush/binds/jobs/nightly", headers=JSON,
                          body=json.dumps({"jobName": "nightly"}))
    assert unit.status_code == 201 and body(unit) == env
    assert job.status_code == 201 and body(job) == env
    assert redis_client.hexists(keys.job_bindings("mypush"), "nightly")

    assert client.http.delete("/resources/mypush/bind", headers=FORM,
                              body="app-name=myapp&unit-host=10.0.0.1").status_code == 200
    assert client.http.delete("/resources/mypush/binds/jobs/nightly",
                              headers=FORM, body="").status_code == 200
    assert client.http.delete("/resources/mypush/bind-app", headers=FORM,
                              body="app-name=myapp").status_code == 200
    assert redis_client.hlen(keys.bindings("mypush")) == 0
    assert redis_client.hlen(keys.unit_bindings("mypush")) == 0
    assert redis_client.hlen(keys.job_bindings("mypush")) == 0


def test_plan_change_queues_a_scale_job(client, redis_client):
    running_instance(client)
    provisioner = FakeProvisioner()

    response = client.http.put("/resources/mypush", headers=FORM, body="plan=large&team=t")
    drain_jobs(provisioner)

    assert response.status_code == 200
    assert redis_client.hget(keys.instance("mypush"), "plan") == "large"
    assert provisioner.calls == [("scale", "mypush")]
    assert client.http.put("/resources/mypush", headers=FORM,
                           body="plan=huge").status_code == 400
    assert client.http.put("/resources/ghost", headers=FORM, body="plan=small").status_code == 404


def test_delete_removes_every_key(client, redis_client):
    env = running_instance(client)
    creds = basic(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"])
    client.http.post("/api/v1/messages", headers={**creds, "Content-Type": "application/json"},
                     body=json.dumps({"channels": ["a"], "content": "x"}))
    provisioner = FakeProvisioner()

    response = client.http.delete("/resources/mypush", headers=FORM, body="user=u&eventid=1")
    drain_jobs(provisioner)

    assert response.status_code == 200
    assert ("deprovision", "mypush") in provisioner.calls
    assert redis_client.keys("*mypush*") == []
    assert client.http.get("/resources/mypush/status", headers=BROKER).status_code == 404
    assert client.http.delete("/resources/mypush", headers=FORM, body="").status_code == 404


def test_info_lists_label_value_pairs(client):
    running_instance(client)

    response = client.http.get("/resources/mypush", headers=BROKER)

    info = {i["label"]: i["value"] for i in body(response)}
    assert info["Status"] == "running" and info["Plan"] == "small"
    assert info["Push stream URL"].startswith("http://")
    assert client.http.get("/resources/ghost", headers=BROKER).status_code == 404


def test_operator_listing(client):
    running_instance(client, "one")
    client.http.post("/resources", headers=FORM, body="name=two&team=t&user=u&plan=large")

    listing = body(client.http.get("/resources", headers=BROKER))

    assert [(i["name"], i["status"], i["replicas"]) for i in listing] == [
        ("one", "running", 1), ("two", "pending", 4)]
    assert client.http.get("/resources").status_code == 401


@pytest.mark.parametrize("damage", [{"status": "bogus"}, {"created": "abc"},
                                    {"tags": "not json"}, "string key"])
def test_a_damaged_record_is_left_out_of_the_listing(client, redis_client, damage):
    running_instance(client, "good")
    running_instance(client, "bad")
    if isinstance(damage, dict):
        redis_client.hset(keys.instance("bad"), mapping=damage)
    else:
        redis_client.delete(keys.instance("bad"))
        redis_client.set(keys.instance("bad"), damage)

    listing = client.http.get("/resources", headers=BROKER)

    assert listing.status_code == 200
    assert [i["name"] for i in body(listing)] == ["good"]


def test_an_instance_with_a_damaged_record_can_still_be_removed(client, redis_client):
    running_instance(client, "damaged")
    redis_client.hset(keys.instance("damaged"), mapping={"created": "abc", "tags": "{"})
    provisioner = FakeProvisioner()

    response = client.http.delete("/resources/damaged", headers=FORM, body="")
    drain_jobs(provisioner)

    assert response.status_code == 200
    assert ("deprovision", "damaged") in provisioner.calls
    assert redis_client.keys("*{damaged}*") == []
    assert not redis_client.sismember(keys.INSTANCES, "damaged")


def test_info_survives_a_damaged_task_death_counter(client, redis_client):
    running_instance(client, "counted")
    redis_client.hset(keys.instance("counted"), "task_deaths", "abc")

    assert client.http.get("/resources/counted", headers=BROKER).status_code == 200


def test_unknown_json_fields_of_any_type_are_ignored(client, redis_client):
    payload = {"name": "future", "team": "t", "user": "u", "newTsuruField": {"a": [1]},
               "anotherOne": [1, 2], "flag": True}

    response = client.http.post("/resources", headers=JSON, body=json.dumps(payload))

    assert response.status_code == 201
    assert redis_client.hget(keys.instance("future"), "team") == "t"
