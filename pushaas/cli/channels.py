"""``pushaas channels ...``: the channels registered on an instance (publisher credentials).

Publishing needs no registered channel; registering gives a channel a TTL, a place in
the listing and in the stats, as the original push-api did.
"""

from typing import Any

import click

from pushaas.cli import output
from pushaas.cli.context import CliContext, json_option, pass_cli

COLUMNS = ("id", "ttl", "created")


def _ttl(seconds: int) -> str:
    return "persistent" if seconds == 0 else f"{seconds}s"


def _show(channels: list[dict[str, Any]]) -> None:
    rows = ([c.get("id"), _ttl(int(c.get("ttl") or 0)), c.get("created")] for c in channels)
    output.show(output.table(COLUMNS, rows))


@click.group("channels")
def channels() -> None:
    """List, create, get and delete channels of the instance you publish to."""


@channels.command("list")
@json_option
@pass_cli
def list_(cli: CliContext) -> None:
    """Every registered channel."""
    found = cli.push_client().list_channels()
    if cli.json:
        output.emit_json(found)
    else:
        _show(found)


@channels.command("create")
@click.argument("channel_id", metavar="ID")
@click.option("--ttl", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seconds the channel lives; 0 = persistent.")
@json_option
@pass_cli
def create(cli: CliContext, channel_id: str, ttl: int) -> None:
    """Register channel ID (exit 1 if it exists)."""
    record = cli.push_client().create_channel(channel_id, ttl)
    if cli.json:
        output.emit_json(record)
    else:
        output.line(f"channel {record['id']} created ({_ttl(int(record['ttl']))})")


@channels.command("get")
@click.argument("channel_id", metavar="ID")
@json_option
@pass_cli
def get(cli: CliContext, channel_id: str) -> None:
    """Show channel ID (exit 1 if it is not registered)."""
    record = cli.push_client().get_channel(channel_id)
    if cli.json:
        output.emit_json(record)
    else:
        _show([record])


@channels.command("delete")
@click.argument("channel_id", metavar="ID")
@json_option
@pass_cli
def delete(cli: CliContext, channel_id: str) -> None:
    """Unregister channel ID; connected subscribers stay connected."""
    cli.push_client().delete_channel(channel_id)
    if cli.json:
        output.emit_json({"id": channel_id, "deleted": True})
    else:
        output.line(f"channel {channel_id} deleted")
