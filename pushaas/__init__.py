"""PushaaS for Python: the push-api client for publisher apps, and the ``pushaas`` CLI.

    from pushaas import PushClient

    with PushClient.from_env() as push:
        push.publish(["news"], "hello")
"""

import logging

from pushaas.broker import BrokerClient, InstanceStatus
from pushaas.client import AsyncPushClient, PushClient
from pushaas.errors import (
    BadRequest,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PushaasError,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from pushaas.events import Event
from pushaas.retry import RetryPolicy
from pushaas.settings import Settings
from pushaas.subscriber import Subscription
from pushaas.urls import subscribe_url
from pushaas.version import __version__

# A library logs, the application decides where it goes (and nothing reaches stderr
# through logging's last-resort handler when it decides nothing).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AsyncPushClient", "BadRequest", "BrokerClient", "ConfigurationError", "Conflict",
    "ConnectionFailed", "Event", "InstanceStatus", "NotFound", "PayloadTooLarge",
    "PreconditionFailed", "PushClient", "PushaasError", "RateLimited", "RetryPolicy",
    "Settings", "Subscription", "Unauthorized", "Unavailable", "__version__",
    "subscribe_url",
]
