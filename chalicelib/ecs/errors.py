"""Which AWS errors a retry cannot fix, and how they reach the user.

A job that raises is retried; a ``ProvisionError`` marks the instance failed at once with
its message. Configuration mistakes (a listener that does not exist, a subnet from another
VPC, a role ECS may not pass) fail the same way on every attempt, so they become
``ProvisionError``. Throttling, 5xx and anything not listed here propagate untouched, so
the job is retried.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError, ParamValidationError

from chalicelib.provisioner import ProvisionError

log = logging.getLogger(__name__)

PERMANENT_CODES = frozenset({
    # ECS
    "AccessDeniedException",
    "ClientException",
    "ClusterNotFoundException",
    "InvalidParameterException",
    "PlatformTaskDefinitionIncompatibilityException",
    "PlatformUnknownException",
    "UnsupportedFeatureException",
    # Elastic Load Balancing
    "AccessDenied",
    "InvalidConfigurationRequest",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "TooManyRules",
    "TooManyTargetGroups",
    "TooManyTags",
    "TooManyUniqueTargetGroupsPerLoadBalancer",
    "ValidationError",
})


class RetryLater(Exception):
    """AWS is busy with something that ends by itself (a service still draining, others
    taking rule priorities concurrently): the job is retried later."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


@contextmanager
def permanent_errors(instance: str, step: str) -> Iterator[None]:
    """Turn the AWS errors a retry cannot fix into a ProvisionError naming the step."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code not in PERMANENT_CODES:
            raise
        log.error("aws rejected step instance=%s step=%s code=%s", instance, step, code)
        raise ProvisionError(f"{step} of {instance} failed: {code}: {error_message(exc)}") from exc
    except ParamValidationError as exc:
        log.error("invalid aws request instance=%s step=%s", instance, step)
        raise ProvisionError(f"{step} of {instance} failed: {exc}") from exc
