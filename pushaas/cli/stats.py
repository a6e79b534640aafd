"""``pushaas stats [CHANNEL] [--watch]``: what the instance's agents report.

Agents report every few seconds, so ``--watch`` refreshes every 2 s; with ``--json``
it prints one JSON document per refresh (JSON Lines).
"""

import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live

from pushaas.cli import output
from pushaas.cli.context import CliContext, json_option, pass_cli
from pushaas.client import PushClient

REFRESH_SECONDS = 2.0


def _fetch(push: PushClient, channel: str | None) -> dict[str, Any]:
    return push.channel_stats(channel) if channel else push.global_stats()


def _render(report: dict[str, Any], channel: str | None) -> Group:
    """The aggregate, then one column per agent (agents are few, their fields many)."""
    aggregated = report.get("aggregated", {})
    title = f"channel {channel}" if channel else "instance"
    summary = output.fields(sorted(aggregated.items()), title=title)

    agents = report.get("all", [])
    names = sorted({key for agent in agents for key in agent} - {"agent"})
    columns = ["agent", *(str(agent.get("agent", "?")) for agent in agents)]
    rows = ([name, *(agent.get(name) for agent in agents)] for name in names)
    per_agent = output.table(columns, rows, title=f"{len(agents)} agent(s) reporting")
    return Group(summary, "", per_agent)


@click.command("stats")
@click.argument("channel", required=False)
@click.option("--watch", is_flag=True, help="Refresh every 2 s until Ctrl-C.")
@json_option
@pass_cli
def stats(cli: CliContext, channel: str | None, watch: bool) -> None:
    """Stats of the instance, or of CHANNEL: subscribers, messages, agents."""
    push = cli.push_client()
    report = _fetch(push, channel)
    if not watch:
        if cli.json:
            output.emit_json(report)
        else:
            output.show(_render(report, channel))
        return

    try:
        if cli.json:
            _watch_json(push, channel, report)
        else:
            _watch_live(push, channel, report)
    except KeyboardInterrupt:
        pass


def _watch_json(push: PushClient, channel: str | None, report: dict[str, Any]) -> None:
    while True:
        output.emit_json(report, one_line=True)
        time.sleep(REFRESH_SECONDS)
        report = _fetch(push, channel)


def _watch_live(push: PushClient, channel: str | None, report: dict[str, Any]) -> None:
    with Live(_render(report, channel), console=output.stdout, auto_refresh=False) as live:
        while True:
            time.sleep(REFRESH_SECONDS)
            live.update(_render(_fetch(push, channel), channel), refresh=True)
