"""The Tsuru service broker: instance lifecycle and bindings, as Tsuru's API defines them.

Routes in ``app.py`` authenticate, parse the body with ``tsuru_request`` and call one
function here. Slow work (starting replicas, scaling, removal) is queued as a job so
Tsuru gets its answer at once.
"""

import json
import logging
import time
from dataclasses import dataclass

from chalicelib import keys
from chalicelib.credentials import publisher_secret
from chalicelib.errors import BadRequest, NotFound, PreconditionFailed, Unavailable
from chalicelib.instances import Instance, Status, validate_name
from chalicelib.jobs import Job, Kind
from chalicelib.services import Services
from chalicelib.stats import instance_summary
from chalicelib.tsuru_request import TsuruFields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusReply:
    """Tsuru reads the status from the HTTP code: 202 pending, 204 up, 500 down."""

    code: int
    body: str = ""


def list_plans(svc: Services) -> list[dict[str, str]]:
    return [{"name": p.name, "description": p.description} for p in svc.plans.values()]


def _plan_name(svc: Services, requested: str) -> str:
    if not requested:
        return next(iter(svc.plans))
    if requested not in svc.plans:
        raise BadRequest(f"unknown plan {requested!r}; plans: {', '.join(svc.plans)}")
    return requested


def create_instance(svc: Services, fields: TsuruFields) -> Instance:
    fields.require("name", "team", "user")
    name = validate_name(fields.get("name"))
    instance = Instance(
        name=name,
        plan=_plan_name(svc, fields.get("plan")),
        team=fields.get("team"),
        user=fields.get("user"),
        description=fields.get("description"),
        tags=fields.get_list("tags"),
    )
    svc.store.create(instance)

    try:
        svc.queue.send(Job(Kind.PROVISION, name))
    except Exception:
        svc.store.purge(name)
        log.exception("could not queue provisioning instance=%s", name)
        raise Unavailable("could not schedule provisioning, nothing was created") from None

    log.info("instance created instance=%s plan=%s team=%s", name, instance.plan, instance.team)
    return instance


def update_instance(svc: Services, name: str, fields: TsuruFields) -> None:
    instance = svc.store.get(name)
    changes: dict[str, object] = {}
    for field_name in ("team", "description"):
        if fields.get(field_name):
            changes[field_name] = fields.get(field_name)
    if "tags" in fields.lists:
        changes["tags"] = fields.get_list("tags")

    new_plan = fields.get("plan")
    plan_changed = bool(new_plan) and new_plan != instance.plan
    if plan_changed:
        changes["plan"] = _plan_name(svc, new_plan)
    if changes:
        svc.store.update(name, **changes)
    if plan_changed:
        svc.queue.send(Job(Kind.SCALE, name))
        log.info("plan changed instance=%s from=%s to=%s", name, instance.plan, new_plan)


def remove_instance(svc: Services, name: str) -> None:
    if svc.store.find_for_removal(name) is None:
        raise NotFound(f"instance {name!r} not found")
    svc.store.set_status(name, Status.REMOVING)
    svc.queue.send(Job(Kind.DEPROVISION, name))
    log.info("instance removal queued instance=%s", name)


def list_instances(svc: Services) -> list[dict[str, object]]:
    """Every instance with what an operator scans for (not part of Tsuru's API)."""
    listing = []
    for instance in svc.store.readable():
        plan = svc.plans.get(instance.plan)
        listing.append({
            "name": instance.name, "plan": instance.plan, "status": instance.status.value,
            "reason": instance.reason, "team": instance.team,
            "replicas": plan.replicas if plan else None,
            "push_stream_url": instance.push_stream_url,
        })
    return listing


def instance_status(svc: Services, name: str) -> StatusReply:
    instance = svc.store.get(name)
    if instance.status is Status.RUNNING:
        return StatusReply(204)
    if instance.status is Status.FAILED:
        return StatusReply(500, instance.reason or "failed")
    if instance.status is Status.REMOVING:
        return StatusReply(200, "removing")
    return StatusReply(202)


def instance_info(svc: Services, name: str) -> list[dict[str, str]]:
    instance = svc.store.get(name)
    plan = svc.plans.get(instance.plan)
    summary = instance_summary(svc.redis, name)
    items = [
        ("Status", instance.status.value),
        ("Plan", instance.plan),
        ("Replicas", str(plan.replicas) if plan else "?"),
        ("Push stream URL", instance.push_stream_url or "(not ready yet)"),
        ("Channels", str(summary.channels)),
        ("Subscribers", str(summary.subscribers)),
        ("Messages retained", str(summary.messages)),
        ("Agents reporting", str(summary.agents)),
        ("Task restarts", str(svc.store.task_deaths(name))),
    ]
    if instance.reason:
        items.append(("Reason", instance.reason))
    return [{"label": label, "value": value} for label, value in items]


def _running(svc: Services, name: str) -> Instance:
    instance = svc.store.get(name)
    if instance.status is not Status.RUNNING or not instance.push_stream_url:
        raise PreconditionFailed(f"instance {name!r} is {instance.status.value}, not running")
    return instance


def app_env(svc: Services, instance: Instance, endpoint: str) -> dict[str, str]:
    """The env vars a bound app or job receives (names from the original PushaaS)."""
    secret = publisher_secret(svc.settings.master_key.reveal(), instance.name, instance.salt)
    return {
        "PUSHAAS_ENDPOINT": svc.settings.endpoint or endpoint,
        "PUSHAAS_USERNAME": instance.name,
        "PUSHAAS_PASSWORD": secret,
        "PUSHAAS_PUSH_STREAM_URL": instance.push_stream_url,
    }


def _record(fields: TsuruFields, *names: str) -> str:
    data = {n: fields.get(n) for n in names if fields.get(n)}
    data.update({n: fields.get_list(n) for n in fields.lists})
    data["bound_at"] = time.time()
    return json.dumps(data)


def bind_app(svc: Services, name: str, fields: TsuruFields, endpoint: str) -> dict[str, str]:
    fields.require("app-name")
    instance = _running(svc, name)
    app = fields.get("app-name")
    svc.redis.hset(keys.bindings(name), app, _record(fields, "app-name", "app-host", "user"))
    log.info("app bound instance=%s app=%s", name, app)
    return app_env(svc, instance, endpoint)


def unbind_app(svc: Services, name: str, fields: TsuruFields) -> None:
    svc.store.get(name)
    app = fields.get("app-name")
    if app:
        svc.redis.hdel(keys.bindings(name), app)
    log.info("app unbound instance=%s app=%s", name, app or "?")


def bind_unit(svc: Services, name: str, fields: TsuruFields, endpoint: str) -> dict[str, str]:
    """``POST /bind``: a unit bind when ``unit-host`` is given, else a legacy app bind."""
    if not fields.get("unit-host"):
        return bind_app(svc, name, fields, endpoint)

    instance = _running(svc, name)
    unit = f"{fields.get('app-name')}|{fields.get('unit-host')}"
    svc.redis.hset(keys.unit_bindings(name), unit, _record(fields, "app-name", "unit-host"))
    return app_env(svc, instance, endpoint)


def unbind_unit(svc: Services, name: str, fields: TsuruFields) -> None:
    svc.store.get(name)
    unit = f"{fields.get('app-name')}|{fields.get('unit-host')}"
    svc.redis.hdel(keys.unit_bindings(name), unit)


def bind_job(svc: Services, name: str, job: str, fields: TsuruFields,
             endpoint: str) -> dict[str, str]:
    if not job:
        raise BadRequest("missing job name")
    instance = _running(svc, name)
    svc.redis.hset(keys.job_bindings(name), job, _record(fields, "job-name", "user"))
    log.info("job bound instance=%s job=%s", name, job)
    return app_env(svc, instance, endpoint)


def unbind_job(svc: Services, name: str, job: str) -> None:
    svc.store.get(name)
    svc.redis.hdel(keys.job_bindings(name), job)

