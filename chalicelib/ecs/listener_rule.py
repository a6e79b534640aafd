"""The listener rule sending ``<instance>.<domain>`` to the instance's target group.

All instances share one HTTPS listener, whose rules need distinct priorities. The
priority is not derived from the name (50,000 values would collide); the rule is found by
its host condition instead, and a new one takes the lowest free priority.
"""

import logging
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ecs import naming
from chalicelib.ecs.errors import RetryLater, error_code
from chalicelib.provisioner import ProvisionError

log = logging.getLogger(__name__)

MAX_PRIORITY = 50_000
PRIORITY_ATTEMPTS = 10
"""Concurrent jobs of other instances may take the priority we picked; each retry skips
the taken one. Running out of attempts raises, and the job is retried later."""


def ensure(elbv2: Any, instance: str, listener_arn: str, host: str, target_group: str) -> str:
    """The ARN of the instance's rule, created if missing and pointed at ``target_group``.

    Two attempts of the same job racing may both create a rule; the extra ones are removed
    here, keeping the one with the lowest priority.
    """
    rules = list(_rules(elbv2, listener_arn))
    mine = sorted((r for r in rules if _host_of(r) == host), key=lambda r: int(r["Priority"]))
    if not mine:
        return _create(elbv2, instance, listener_arn, host, target_group, rules)

    kept, extra = mine[0], mine[1:]
    for rule in extra:
        _delete(elbv2, instance, rule)
    if _forwards_to(kept) != {target_group}:
        elbv2.modify_rule(RuleArn=kept["RuleArn"], Actions=_forward(target_group))
        log.info("listener rule repointed instance=%s priority=%s", instance, kept["Priority"])
    return kept["RuleArn"]


def delete(elbv2: Any, instance: str, listener_arn: str, host: str,
           target_group: str | None) -> int:
    """Remove every rule for ``host`` or forwarding to ``target_group``; returns how many.

    Rules that forward to the group under another host (the domain setting changed) would
    otherwise keep the target group in use and block its deletion.
    """
    try:
        rules = list(_rules(elbv2, listener_arn))
    except ClientError as exc:
        if error_code(exc) != "ListenerNotFound":
            raise
        log.warning("listener gone, so are its rules instance=%s", instance)
        return 0

    doomed = [rule for rule in rules
              if not rule.get("IsDefault")
              and (_host_of(rule) == host or target_group in _forwards_to(rule))]
    for rule in doomed:
        _delete(elbv2, instance, rule)
    log.info("listener rules removed instance=%s count=%d", instance, len(doomed))
    return len(doomed)


def _create(elbv2: Any, instance: str, listener_arn: str, host: str, target_group: str,
            rules: list[dict[str, Any]]) -> str:
    taken = {int(r["Priority"]) for r in rules if str(r.get("Priority", "")).isdigit()}
    for _ in range(PRIORITY_ATTEMPTS):
        priority = _lowest_free(taken)
        try:
            created = elbv2.create_rule(
                ListenerArn=listener_arn,
                Priority=priority,
                Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": [host]}}],
                Actions=_forward(target_group),
                Tags=naming.elb_tags(instance),
            )
        except ClientError as exc:
            if error_code(exc) != "PriorityInUse":
                raise
            log.info("listener rule priority taken instance=%s priority=%d", instance, priority)
            taken.add(priority)
            continue

        log.info("listener rule created instance=%s host=%s priority=%d",
                 instance, host, priority)
        return created["Rules"][0]["RuleArn"]

    raise RetryLater(f"no free listener rule priority for {instance} after "
                       f"{PRIORITY_ATTEMPTS} attempts (others taking them concurrently)")


def _lowest_free(taken: set[int]) -> int:
    for priority in range(1, MAX_PRIORITY + 1):
        if priority not in taken:
            return priority
    raise ProvisionError("every priority of the load balancer listener is taken")


def _delete(elbv2: Any, instance: str, rule: dict[str, Any]) -> None:
    try:
        elbv2.delete_rule(RuleArn=rule["RuleArn"])
    except ClientError as exc:
        if error_code(exc) != "RuleNotFound":
            raise
    log.info("listener rule deleted instance=%s priority=%s", instance, rule.get("Priority"))


def _rules(elbv2: Any, listener_arn: str) -> Iterator[dict[str, Any]]:
    for page in elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener_arn):
        yield from page.get("Rules", [])


def _host_of(rule: dict[str, Any]) -> str | None:
    """The host of a rule whose only condition is one host-header value, else None."""
    conditions = rule.get("Conditions", [])
    if len(conditions) != 1 or conditions[0].get("Field") != "host-header":
        return None

    condition = conditions[0]
    values = condition.get("HostHeaderConfig", {}).get("Values") or condition.get("Values", [])
    return values[0].lower() if len(values) == 1 else None


def _forwards_to(rule: dict[str, Any]) -> set[str]:
    groups: set[str] = set()
    for action in rule.get("Actions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            groups.add(action["TargetGroupArn"])
        for group in action.get("ForwardConfig", {}).get("TargetGroups", []):
            groups.add(group["TargetGroupArn"])
    return groups


def _forward(target_group: str) -> list[dict[str, Any]]:
    return [{"Type": "forward", "TargetGroupArn": target_group}]
