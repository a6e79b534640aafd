"""PushaaS: the Tsuru service broker and the push-api, as one Chalice app.

Routes only authenticate, parse and delegate to ``chalicelib``; every view is wrapped
by ``api_view`` so errors become JSON in one place.
"""

import logging
from collections.abc import Callable

from chalice import Chalice, Rate, Response
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib import broker, console, ecs_events, pushapi, services
from chalicelib.credentials import check_broker
from chalicelib.http import JSON_TYPES, api_view, base_url, created, empty, normalize_error
from chalicelib.openapi import openapi_document
from chalicelib.reconciler import Reconciler
from chalicelib.settings import log_level
from chalicelib.sqs_queue import handle_delivery
from chalicelib.tsuru_request import TsuruFields, parse

app = Chalice(app_name="pushaas")
app.register_blueprint(console.blueprint)
logging.basicConfig(level=log_level(),
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")

TSURU_TYPES = ["application/x-www-form-urlencoded", "application/json"]
view = api_view(lambda: app.current_request)


@app.middleware("http")
def uniform_errors(event: object, get_response: Callable[[object], Response]) -> Response:
    return normalize_error(get_response(event))


def _broker() -> tuple[services.Services, TsuruFields]:
    """Authenticate a broker request and parse its body, before anything else happens."""
    svc = services.current()
    request = app.current_request
    check_broker(request.headers, svc.settings.broker_username,
                 svc.settings.broker_password.reveal())
    return svc, parse(request.raw_body, request.headers.get("content-type"))


# ---- Tsuru service API ---------------------------------------------------------------

@app.route("/resources/plans", methods=["GET"])
@view
def plans() -> list:
    svc, _ = _broker()
    return broker.list_plans(svc)


@app.route("/resources", methods=["GET"])
@view
def list_instances() -> list:
    """Operator listing of every instance (an addition to Tsuru's API, same credentials)."""
    svc, _ = _broker()
    return broker.list_instances(svc)


@app.route("/resources", methods=["POST"], content_types=TSURU_TYPES)
@view
def create_instance() -> Response:
    svc, fields = _broker()
    broker.create_instance(svc, fields)
    return empty(201)


@app.route("/resources/{name}", methods=["GET"])
@view
def instance_info(name: str) -> list:
    svc, _ = _broker()
    return broker.instance_info(svc, name)


@app.route("/resources/{name}", methods=["PUT"], content_types=TSURU_TYPES)
@view
def update_instance(name: str) -> Response:
    svc, fields = _broker()
    broker.update_instance(svc, name, fields)
    return empty(200)


@app.route("/resources/{name}", methods=["DELETE"], content_types=TSURU_TYPES)
@view
def remove_instance(name: str) -> Response:
    svc, _ = _broker()
    broker.remove_instance(svc, name)
    return empty(200)


@app.route("/resources/{name}/status", methods=["GET"])
@view
def instance_status(name: str) -> Response:
    svc, _ = _broker()
    reply = broker.instance_status(svc, name)
    return Response(body=reply.body, status_code=reply.code,
                    headers={"Content-Type": "text/plain"})


@app.route("/resources/{name}/bind-app", methods=["POST"], content_types=TSURU_TYPES)
@view
def bind_app(name: str) -> Response:
    svc, fields = _broker()
    return created(broker.bind_app(svc, name, fields, base_url(app.current_request)))


@app.route("/resources/{name}/bind-app", methods=["DELETE"], content_types=TSURU_TYPES)
@view
def unbind_app(name: str) -> Response:
    svc, fields = _broker()
    broker.unbind_app(svc, name, fields)
    return empty(200)


@app.route("/resources/{name}/bind", methods=["POST"], content_types=TSURU_TYPES)
@view
def bind_unit(name: str) -> Response:
    svc, fields = _broker()
    return created(broker.bind_unit(svc, name, fields, base_url(app.current_request)))


@app.route("/resources/{name}/bind", methods=["DELETE"], content_types=TSURU_TYPES)
@view
def unbind_unit(name: str) -> Response:
    svc, fields = _broker()
    broker.unbind_unit(svc, name, fields)
    return empty(200)


@app.route("/resources/{name}/binds/jobs/{job}", methods=["PUT"], content_types=TSURU_TYPES)
@view
def bind_job(name: str, job: str) -> Response:
    svc, fields = _broker()
    return created(broker.bind_job(svc, name, job, fields, base_url(app.current_request)))


@app.route("/resources/{name}/binds/jobs/{job}", methods=["DELETE"], content_types=TSURU_TYPES)
@view
def unbind_job(name: str, job: str) -> Response:
    svc, _ = _broker()
    broker.unbind_job(svc, name, job)
    return empty(200)


# ---- push-api ------------------------------------------------------------------------

@app.route("/api/healthcheck", methods=["GET"])
@view
def healthcheck() -> dict:
    services.current().redis.ping()
    return {"status": "ok"}


@app.route("/api/openapi.json", methods=["GET"])
@view
def openapi() -> dict:
    """This API's OpenAPI document, its ``servers`` set to the URL it was fetched from."""
    return openapi_document(base_url(app.current_request))


@app.route("/api/v1/auth", methods=["GET"])
@view
def auth() -> dict:
    return pushapi.check_auth(services.current(), app.current_request)


@app.route("/api/v1/messages", methods=["POST"], content_types=JSON_TYPES)
@view
def post_message() -> Response:
    return pushapi.post_message(services.current(), app.current_request)


@app.route("/api/v1/tokens", methods=["POST"], content_types=JSON_TYPES)
@view
def issue_token() -> Response:
    return pushapi.issue_token(services.current(), app.current_request)


@app.route("/api/v1/channels", methods=["GET"])
@view
def list_channels() -> list:
    return pushapi.channel_store(services.current(), app.current_request).list()


@app.route("/api/v1/channels", methods=["POST"], content_types=JSON_TYPES)
@view
def post_channel() -> Response:
    return pushapi.post_channel(services.current(), app.current_request)


@app.route("/api/v1/channels/{channel_id}", methods=["GET"])
@view
def get_channel(channel_id: str) -> dict:
    return pushapi.channel_store(services.current(), app.current_request).get(
        pushapi.path_id(channel_id))


@app.route("/api/v1/channels/{channel_id}", methods=["DELETE"])
@view
def delete_channel(channel_id: str) -> Response:
    return pushapi.delete_channel(services.current(), app.current_request,
                                  pushapi.path_id(channel_id))


@app.route("/api/v1/stats/global", methods=["GET"])
@view
def global_stats() -> dict:
    return pushapi.global_stats(services.current(), app.current_request)


@app.route("/api/v1/stats/channels/{channel_id}", methods=["GET"])
@view
def channel_stats(channel_id: str) -> dict:
    return pushapi.channel_stats(services.current(), app.current_request,
                                 pushapi.path_id(channel_id))


@app.route("/api/v1/config", methods=["GET"])
@view
def config() -> dict:
    return pushapi.config(services.current(), app.current_request)


# ---- AWS events ----------------------------------------------------------------------

JOBS_QUEUE = "pushaas-jobs"
ECS_TASK_CHANGES = {
    "source": ["aws.ecs"],
    "detail-type": ["ECS Task State Change"],
    "detail": {"group": [{"prefix": "service:pushaas-"}]},
}


@app.on_sqs_message(queue=JOBS_QUEUE, batch_size=1)
def handle_job(event: SQSEvent) -> None:
    """Provision, scale and deprovision jobs; raising hands the message back to SQS."""
    svc = services.current()
    for record in event:
        receive_count = int(record.to_dict().get("attributes", {})
                            .get("ApproximateReceiveCount", 1))
        handle_delivery(record.body, receive_count, svc, svc.settings.job_attempts)


@app.on_cw_event(ECS_TASK_CHANGES)
def handle_ecs_event(event: CloudWatchEvent) -> None:
    svc = services.current()
    change = ecs_events.parse(event.detail, svc.provisioner.instance_for_group)
    if change is not None:
        ecs_events.apply(change, svc.store)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reconcile(event: CloudWatchEvent) -> None:
    svc = services.current()
    Reconciler(svc.store, svc.plans, svc.provisioner).run()
