"""The push-api used by publisher apps, wire-compatible with the original PushaaS.

Each function takes the current request, authenticates it to one instance and works
only on that instance's keys, so credentials of one instance can never reach another.
"""

import logging
from urllib.parse import unquote, urlsplit

from chalice.app import Request, Response

from chalicelib import messages, private_channels, stats
from chalicelib.channels import ChannelStore, validate_id
from chalicelib.errors import NotFound, Unavailable
from chalicelib.http import created, empty, header, json_body
from chalicelib.instances import Instance
from chalicelib.plans import Plan
from chalicelib.publisher_auth import authenticate
from chalicelib.services import Services

log = logging.getLogger(__name__)


def _login(svc: Services, request: Request) -> tuple[Instance, Plan]:
    instance = authenticate(svc, request.headers)
    plan = svc.plans.get(instance.plan)
    if plan is None:
        log.error("instance has an unknown plan instance=%s plan=%s", instance.name, instance.plan)
        raise Unavailable("instance plan is not configured")
    return instance, plan


def path_id(raw: str) -> str:
    """A channel id from the URL path, percent-decoded.

    JavaScript's encodeURIComponent sends ``user:42`` as ``user%3A42``, and whether the
    gateway in front decoded it already varies (chalice local does not). No valid id holds
    a ``%``, so decoding once is never wrong.
    """
    return unquote(raw) if "%" in raw else raw


def check_auth(svc: Services, request: Request) -> dict:
    instance, _ = _login(svc, request)
    return {"authenticated": True, "instance": instance.name}


def post_message(svc: Services, request: Request) -> Response:
    instance, plan = _login(svc, request)
    channels, text = messages.validate_message(plan, json_body(request))
    key = messages.validate_idempotency_key(header(request, "idempotency-key"))

    entry_id = messages.publish(svc.redis, instance.name, plan, channels, text, key,
                                min_replicas=svc.settings.redis_min_replicas)
    log.info("message appended instance=%s id=%s channels=%d bytes=%d",
             instance.name, entry_id, len(channels), len(text.encode()))
    return created({"id": entry_id, "channels": channels})


def issue_token(svc: Services, request: Request) -> Response:
    """A subscribe token for private channels, for the publisher app to hand to a browser."""
    instance, plan = _login(svc, request)
    channels, ttl = private_channels.validate_request(plan, json_body(request))

    granted = private_channels.grant(svc.settings.master_key.reveal(), instance, channels, ttl)
    log.info("subscribe token issued instance=%s channels=%d ttl=%d",
             instance.name, len(channels), ttl)
    return created(granted)


def channel_store(svc: Services, request: Request) -> ChannelStore:
    instance, plan = _login(svc, request)
    return ChannelStore(svc.redis, instance.name, plan)


def post_channel(svc: Services, request: Request) -> Response:
    store = channel_store(svc, request)
    record = store.create(json_body(request))
    log.info("channel created instance=%s channel=%s ttl=%s",
             store.instance, record["id"], record["ttl"])
    return created(record)


def delete_channel(svc: Services, request: Request, channel_id: str) -> Response:
    store = channel_store(svc, request)
    store.delete(channel_id)
    log.info("channel deleted instance=%s channel=%s", store.instance, channel_id)
    return empty(204)


def global_stats(svc: Services, request: Request) -> dict:
    instance, _ = _login(svc, request)
    return stats.global_stats(svc.redis, instance.name)


def channel_stats(svc: Services, request: Request, channel_id: str) -> dict:
    instance, plan = _login(svc, request)
    validate_id(plan, channel_id)
    report = stats.channel_stats(svc.redis, instance.name, channel_id)
    if not report["all"]:
        ChannelStore(svc.redis, instance.name, plan).get(channel_id)
    return report


def config(svc: Services, request: Request) -> dict:
    """Where subscribers connect, as the original push-api and its JS client expect."""
    instance, _ = _login(svc, request)
    if not instance.push_stream_url:
        raise NotFound(f"instance {instance.name!r} has no push-stream URL yet")

    url = urlsplit(instance.push_stream_url)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        log.error("unreadable push-stream URL instance=%s", instance.name)
        raise Unavailable("instance push-stream URL is not usable") from None
    return {"pushStream": {"url": instance.push_stream_url, "hostname": url.hostname or "",
                           "port": str(port)}}
