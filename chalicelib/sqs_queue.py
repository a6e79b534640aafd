"""The SQS job queue of AWS mode, and the handling of one delivered job.

SQS gives at-least-once delivery and counts receptions; a job that raises is received
again after the visibility timeout, and after the redrive policy's count it moves to the
dead-letter queue. On the last reception the instance is marked failed first, so the
user reads why in ``GET /resources/{name}`` and ``/status``.
"""

import logging

from chalicelib.jobs import Job, JobContext, fail_job, run_job

log = logging.getLogger(__name__)


class SqsJobQueue:
    def __init__(self, queue_url: str, client: object | None = None):
        self.queue_url = queue_url
        if client is None:
            import boto3  # only AWS mode pays for importing boto3

            client = boto3.client("sqs")
        self.client = client

    def send(self, job: Job) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=job.to_json())
        log.info("job queued job=%s kind=%s instance=%s", job.id, job.kind.value, job.instance)


def handle_delivery(body: str, receive_count: int, ctx: JobContext, attempts: int) -> None:
    """Run the job in one SQS message; raise so SQS retries it (or dead-letters it).

    A malformed body raises too: the dead-letter queue keeps it for an operator instead of
    the job vanishing.
    """
    job = Job.from_json(body)
    job = Job(kind=job.kind, instance=job.instance, id=job.id, attempt=receive_count)

    try:
        run_job(job, ctx)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if receive_count >= attempts:
            fail_job(job, ctx, reason)
        else:
            log.warning("job error, SQS will retry job=%s kind=%s instance=%s attempt=%d "
                        "retries_left=%d error=%s", job.id, job.kind.value, job.instance,
                        receive_count, attempts - receive_count, reason)
        raise
