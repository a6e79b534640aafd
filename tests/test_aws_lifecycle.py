"""The AWS path end to end: Chalice's test client, moto for AWS, a real Redis.

The broker queues jobs on SQS; the SQS, EventBridge and schedule handlers are invoked as
Lambda would invoke them, with events built by Chalice's test client.
"""

import json
import time
from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client

from chalicelib import keys, services
from tests.api import BROKER, FORM, MASTER_KEY, body
from tests.aws import REGION, Aws, moto_account

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_account(monkeypatch) as account:
        yield account


@pytest.fixture
def lambda_client(aws: Aws, redis_client, redis_server, monkeypatch) -> Iterator[Client]:
    """The app as deployed to the dev stage: ECS provisioner, SQS jobs, secrets from SM."""
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pushaas/service", SecretString=json.dumps({
            "broker_password": "broker-secret-for-tests", "master_key": MASTER_KEY,
            "redis_url": redis_server.url}))["ARN"]
    queue_url = boto3.client("sqs", region_name=REGION).create_queue(
        QueueName="pushaas-jobs")["QueueUrl"]
    for name, value in {**aws.env, "PUSHAAS_SECRETS_ARN": secret,
                        "PUSHAAS_JOBS_QUEUE_URL": queue_url}.items():
        monkeypatch.setenv(name, value)
    for name in ("PUSHAAS_REDIS_URL", "PUSHAAS_BROKER_PASSWORD", "PUSHAAS_MASTER_KEY",
                 "PUSHAAS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    services.current.cache_clear()

    import app

    with Client(app.app, stage_name="dev") as client:
        yield client
    services.current.cache_clear()


def run_queued_jobs(client: Client) -> int:
    """Deliver what the broker put on SQS to the job handler, as the event source would."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName="pushaas-jobs")["QueueUrl"]
    ran = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=0).get("Messages"):
        for message in messages:
            event = client.events.generate_sqs_event(queue_name="pushaas-jobs",
                                                     message_bodies=[message["Body"]])
            client.lambda_.invoke("handle_job", event)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            ran += 1
    return ran


def task_event(client: Client, name: str, status: str, **detail: object) -> None:
    event = client.events.generate_cw_event(
        source="aws.ecs", detail_type="ECS Task State Change", resources=[],
        detail={"group": f"service:pushaas-{name}", "lastStatus": status,
                "taskArn": f"arn:aws:ecs:{REGION}:123456789012:task/pushaas/t1", **detail})
    client.lambda_.invoke("handle_ecs_event", event)


def status(client: Client, name: str) -> int:
    return client.http.get(f"/resources/{name}/status", headers=BROKER).status_code


def create(client: Client, name: str, plan: str = "small") -> None:
    response = client.http.post("/resources", headers=FORM,
                                body=f"name={name}&plan={plan}&team=t&user=u")
    assert response.status_code == 201, response.body


def instance_resources(aws: Aws) -> list[object]:
    """Everything the provisioner creates for instances, as moto holds it."""
    family_revisions = aws.ecs.list_task_definitions(familyPrefix="pushaas-",
                                                     status="ACTIVE")["taskDefinitionArns"]
    return [*aws.services(), *aws.target_groups(), *aws.rules(), *family_revisions]


def test_whole_lifecycle(aws: Aws, lambda_client: Client, redis_client) -> None:
    client = lambda_client
    create(client, "mypush")
    assert status(client, "mypush") == 202
    assert run_queued_jobs(client) == 1

    [service] = aws.services()
    assert (service["serviceName"], service["desiredCount"]) == ("pushaas-mypush", 1)
    assert service["launchType"] == "FARGATE"
    [group] = aws.target_groups()
    assert service["loadBalancers"][0]["targetGroupArn"] == group["TargetGroupArn"]
    [rule] = aws.rules()
    assert rule["Conditions"][0]["HostHeaderConfig"]["Values"] == ["mypush.push.example.com"]
    assert aws.revisions("pushaas-mypush")
    assert status(client, "mypush") == 202

    task_event(client, "mypush", "RUNNING", startedAt="2026-12-03T10:00:00Z")
    assert status(client, "mypush") == 204
    bound = client.http.post("/resources/mypush/bind-app", headers=FORM, body="app-name=a")
    assert body(bound)["PUSHAAS_PUSH_STREAM_URL"] == "https://mypush.push.example.com"

    assert client.http.put("/resources/mypush", headers=FORM,
                           body="plan=medium").status_code == 200
    run_queued_jobs(client)
    assert aws.services()[0]["desiredCount"] == 2

    assert client.http.delete("/resources/mypush", headers=FORM, body="").status_code == 200
    run_queued_jobs(client)
    assert instance_resources(aws) == []
    assert redis_client.keys("*{mypush}*") == []
    assert status(client, "mypush") == 404


def test_a_job_delivered_twice_ends_in_the_same_state(aws: Aws, lambda_client: Client) -> None:
    create(lambda_client, "twice")
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName="pushaas-jobs")["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    event = lambda_client.events.generate_sqs_event(queue_name="pushaas-jobs",
                                                    message_bodies=[message["Body"]])

    lambda_client.lambda_.invoke("handle_job", event)
    first = instance_resources(aws)
    lambda_client.lambda_.invoke("handle_job", event)

    assert instance_resources(aws) == first
    assert len(aws.services()) == len(aws.rules()) == len(aws.target_groups()) == 1


def test_task_stopped_before_running_fails_the_instance(aws: Aws, lambda_client: Client) -> None:
    create(lambda_client, "doomed")
    run_queued_jobs(lambda_client)

    task_event(lambda_client, "doomed", "STOPPED",
               stoppedReason="CannotPullContainerError: pull access denied")

    reply = lambda_client.http.get("/resources/doomed/status", headers=BROKER)
    assert reply.status_code == 500
    assert b"CannotPullContainerError" in reply.body


def test_a_job_that_cannot_succeed_fails_with_its_reason(aws: Aws, lambda_client: Client,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("PUSHAAS_LB_LISTENER_ARN", aws.listener_arn.replace("/app/", "/app/x"))
    services.current.cache_clear()
    create(lambda_client, "nolistener")

    run_queued_jobs(lambda_client)

    reply = lambda_client.http.get("/resources/nolistener/status", headers=BROKER)
    assert reply.status_code == 500
    assert b"listener" in reply.body.lower()


def test_reconciler_recreates_a_service_deleted_by_hand(aws: Aws, lambda_client: Client,
                                                        redis_client) -> None:
    create(lambda_client, "fragile")
    run_queued_jobs(lambda_client)
    task_event(lambda_client, "fragile", "RUNNING", startedAt="2026-12-03T10:00:00Z")
    aws.ecs.delete_service(cluster="pushaas", service="pushaas-fragile", force=True)
    assert aws.services() == []
    redis_client.hset(keys.instance("fragile"), "updated", str(time.time() - 600))

    schedule = lambda_client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    lambda_client.lambda_.invoke("reconcile", schedule)

    [service] = aws.services()
    assert service["serviceName"] == "pushaas-fragile"
    assert status(lambda_client, "fragile") == 202


def delivery(client: Client, name: str, receive_count: int) -> dict:
    """The SQS event of the instance's queued job, as its ``receive_count``-th delivery."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName="pushaas-jobs")["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert json.loads(message["Body"])["instance"] == name
    event = client.events.generate_sqs_event(queue_name="pushaas-jobs",
                                             message_bodies=[message["Body"]])
    event["Records"][0].setdefault("attributes", {})["ApproximateReceiveCount"] = \
        str(receive_count)
    return event


def test_a_job_that_failed_half_way_is_finished_by_its_redelivery(
    aws: Aws, lambda_client: Client, monkeypatch,
) -> None:
    """ECS refuses the service after routing, key and revision exist; SQS delivers the job
    again and it converges to what one clean run leaves: one of everything."""
    from chalicelib.ecs import provisioner
    from chalicelib.ecs.errors import RetryLater

    create(lambda_client, "halfway")
    converge = provisioner.service.converge

    def refuse(*args, **kwargs):
        raise RetryLater("ECS is busy")

    monkeypatch.setattr(provisioner.service, "converge", refuse)
    with pytest.raises(RetryLater):
        lambda_client.lambda_.invoke("handle_job", delivery(lambda_client, "halfway", 1))
    assert (aws.services(), len(aws.target_groups()), len(aws.rules())) == ([], 1, 1)
    assert status(lambda_client, "halfway") == 202

    monkeypatch.setattr(provisioner.service, "converge", converge)
    lambda_client.lambda_.invoke("handle_job", delivery(lambda_client, "halfway", 2))

    assert len(aws.services()) == len(aws.target_groups()) == len(aws.rules()) == 1
    assert len(aws.revisions("pushaas-halfway")) == 1
    assert aws.services()[0]["loadBalancers"][0]["targetGroupArn"] == \
        aws.target_groups()[0]["TargetGroupArn"]


def test_a_job_failing_on_every_delivery_fails_the_instance_on_the_last(
    aws: Aws, lambda_client: Client, monkeypatch,
) -> None:
    from chalicelib.ecs import provisioner
    from chalicelib.ecs.errors import RetryLater

    create(lambda_client, "stubborn")
    attempts = services.current().settings.job_attempts

    def refuse(*args, **kwargs):
        raise RetryLater("ECS is busy")

    monkeypatch.setattr(provisioner.service, "converge", refuse)
    for receive_count in range(1, attempts + 1):
        with pytest.raises(RetryLater):
            lambda_client.lambda_.invoke("handle_job",
                                         delivery(lambda_client, "stubborn", receive_count))
        expected = 500 if receive_count == attempts else 202
        assert status(lambda_client, "stubborn") == expected, receive_count

    reply = lambda_client.http.get("/resources/stubborn/status", headers=BROKER)
    assert b"ECS is busy" in reply.body
