"""``pushaas publish`` and ``pushaas subscribe``: both ends of the message path.

``publish`` speaks the push-api as a publisher app does; ``subscribe`` connects to the
instance's push-stream as a browser's EventSource does, so together they check an
instance from end to end.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from pushaas.cli import output
from pushaas.cli.context import CliContext, json_option, pass_cli
from pushaas.retry import RetryPolicy
from pushaas.subscriber import Subscription
from pushaas.urls import subscribe_url

# Reconnects of a long-lived subscription: patient, but not forever.
SUBSCRIBE_RETRY = RetryPolicy(max_attempts=6, max_elapsed=60.0, base_delay=0.5, max_delay=10.0)


@click.command("publish")
@click.argument("channels", nargs=-1, required=True)
@click.option("--content", help="The message text.")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Publish the whole file as one message.")
@click.option("--idempotency-key", help="Publishing again with the same key returns the "
              "same id instead of a second message (one message only).")
@json_option
@pass_cli
def publish(cli: CliContext, channels: tuple[str, ...], content: str | None,
            file_: Path | None, idempotency_key: str | None) -> None:
    """Publish to CHANNELS and print the message id(s).

    The text is --content, the contents of --file, or else each non-empty line of
    stdin as its own message. Stops at the first message refused.
    """
    if content is not None and file_ is not None:
        raise click.UsageError("give --content or --file, not both")
    if content is None and file_ is None and idempotency_key:
        raise click.UsageError("--idempotency-key needs --content or --file")

    push = cli.push_client()
    published = []
    for text in _messages(content, file_):
        message_id = push.publish(list(channels), text, idempotency_key)
        published.append({"id": message_id, "channels": list(channels)})
        if not cli.json:
            output.line(message_id)

    if cli.json:
        output.emit_json(published)


def _messages(content: str | None, file_: Path | None) -> Iterator[str]:
    """The messages to publish, read lazily so stdin lines go out as they arrive."""
    if content is not None:
        yield content
        return
    if file_ is not None:
        yield file_.read_text(encoding="utf-8")
        return

    if sys.stdin.isatty():
        raise click.UsageError("give --content or --file, or pipe messages on stdin")
    found = False
    for raw in sys.stdin:
        text = raw.rstrip("\r\n")
        if text:
            found = True
            yield text
    if not found:
        raise click.UsageError("stdin had no message (one message per non-empty line)")


@click.command("subscribe")
@click.argument("channels", nargs=-1, required=True)
@click.option("--since", metavar="EVENT_ID",
              help="Resume after this event id (as printed by a previous subscribe).")
@click.option("--count", type=click.IntRange(min=1), help="Exit after N messages.")
@json_option
@pass_cli
def subscribe(cli: CliContext, channels: tuple[str, ...], since: str | None,
              count: int | None) -> None:
    """Print messages of CHANNELS live, as EventSource subscribers receive them.

    Each line is the event id, then the envelope {"id","channel","text","time"}.
    Connects to PUSHAAS_PUSH_STREAM_URL, or asks the push-api where to connect when it
    is unset. Ctrl-C stops (exit 0).
    """
    subscription = Subscription(
        _subscribe_url(cli, list(channels)), last_event_id=since, retry=SUBSCRIBE_RETRY,
        on_open=None if cli.json else lambda: output.note(
            f"subscribed to {', '.join(channels)} (Ctrl-C to stop)"))
    received = 0
    try:
        for event in subscription:
            _print_event(event.id, event.data, cli.json)
            received += 1
            if count is not None and received >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        subscription.close()


def _subscribe_url(cli: CliContext, channels: list[str]) -> str:
    """The EventSource URL, from --push-stream-url or else from the push-api's config."""
    base = cli.push_stream_url
    if not base:
        base = cli.push_client().config()["pushStream"]["url"]

    try:
        return subscribe_url(base, channels)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _print_event(event_id: str, data: str, as_json: bool) -> None:
    try:
        envelope: Any = json.loads(data)
    except ValueError:
        envelope = None

    if as_json:
        fields = envelope if isinstance(envelope, dict) else {"data": data}
        output.emit_json({"event_id": event_id, **fields}, one_line=True)
    else:
        output.line(f"{event_id} {data}")
    sys.stdout.flush()
