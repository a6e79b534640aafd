"""``pushaas instance ...``: what Tsuru does with service instances, through the broker.

These commands use the broker's credentials (``--broker-password``), as an operator or
Tsuru itself would; they make the same calls as ``tsuru service-instance-add`` and
friends, so what works here works from Tsuru.
"""

import getpass
import shlex
import time
from collections.abc import Callable

import click

from pushaas.broker import BrokerClient, InstanceStatus
from pushaas.cli import output
from pushaas.cli.context import CliContext, json_option, pass_cli
from pushaas.cli.exit_codes import API_ERROR, TIMEOUT, CliFailure

WAIT_INTERVAL = 0.5

# Called on each pending status with the state and the seconds waited so far.
Progress = Callable[[str, float], None]


@click.group("instance")
def instance() -> None:
    """Create, inspect, scale, bind and remove push instances (broker credentials)."""


def _login_name() -> str:
    """Who runs the command; containers without a passwd entry have no name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@instance.command("create")
@click.argument("name")
@click.option("--plan", default="", help="small, medium or large (default: the first plan).")
@click.option("--team", default="cli", show_default=True, help="Owning Tsuru team.")
@click.option("--user", default=lambda: _login_name(), show_default="your login name",
              help="Who asks (Tsuru sends the user's e-mail).")
@json_option
@pass_cli
def create(cli: CliContext, name: str, plan: str, team: str, user: str) -> None:
    """Create instance NAME; it is pending until `pushaas instance wait NAME` says running."""
    cli.broker_client().create_instance(name, plan, team, user)

    if cli.json:
        output.emit_json({"name": name, "status": "pending"})
    else:
        output.line(f"instance {name} created, provisioning (pushaas instance wait {name})")


@instance.command("list")
@json_option
@pass_cli
def list_(cli: CliContext) -> None:
    """Every instance, with its plan and status (an operator listing)."""
    instances = cli.broker_client().list_instances()

    if cli.json:
        output.emit_json(instances)
        return
    columns = ["name", "plan", "status", "replicas", "team", "push_stream_url", "reason"]
    output.show(output.table(columns, ([i.get(c) for c in columns] for i in instances)))


@instance.command("info")
@click.argument("name")
@json_option
@pass_cli
def info(cli: CliContext, name: str) -> None:
    """What Tsuru shows for NAME: status, plan, push-stream URL, channels, subscribers..."""
    items = cli.broker_client().instance_info(name)

    if cli.json:
        output.emit_json({item["label"]: item["value"] for item in items})
        return
    output.show(output.fields(((i["label"], i["value"]) for i in items), title=name))


@instance.command("scale")
@click.argument("name")
@click.option("--plan", required=True, help="The new plan; its replica count is applied.")
@json_option
@pass_cli
def scale(cli: CliContext, name: str, plan: str) -> None:
    """Move NAME to another plan (a scaling job adds or removes replicas)."""
    cli.broker_client().change_plan(name, plan)

    if cli.json:
        output.emit_json({"name": name, "plan": plan})
    else:
        output.line(f"instance {name} moving to plan {plan}")


@instance.command("remove")
@click.argument("name")
@json_option
@pass_cli
def remove(cli: CliContext, name: str) -> None:
    """Remove NAME: its replicas stop and all its data is deleted."""
    cli.broker_client().remove_instance(name)

    if cli.json:
        output.emit_json({"name": name, "status": "removing"})
    else:
        output.line(f"instance {name} is being removed")


@instance.command("wait")
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds to wait before giving up (exit 5).")
@json_option
@pass_cli
def wait(cli: CliContext, name: str, timeout: float) -> None:
    """Wait until NAME runs (exit 0) or fails (exit 1, with the reason)."""
    broker = cli.broker_client()
    if output.stderr.is_terminal and not cli.json:
        with output.stderr.status(f"waiting for {name}") as spinner:
            status = _poll(broker, name, timeout,
                           lambda s, waited: spinner.update(f"{name}: {s} ({waited:.0f}s)"))
    else:
        status = _poll(broker, name, timeout, lambda s, waited: None)

    if status.state == "failed":
        raise CliFailure(f"instance {name} failed: {status.reason or 'no reason given'}")
    if status.state != "running":
        raise CliFailure(f"instance {name} is {status.state}, it will not run", API_ERROR)
    if cli.json:
        output.emit_json({"name": name, "status": status.state})
    else:
        output.line(f"instance {name} is running")


def _poll(broker: BrokerClient, name: str, timeout: float, progress: Progress) -> InstanceStatus:
    """The first status other than pending; a timeout after ``timeout`` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    while (status := broker.instance_status(name)).state == "pending":
        progress(status.state, time.monotonic() - started)
        if time.monotonic() + WAIT_INTERVAL > deadline:
            raise CliFailure(f"instance {name} still pending after {timeout:g}s", TIMEOUT)
        time.sleep(WAIT_INTERVAL)
    return status


@instance.command("bind")
@click.argument("name")
@click.option("--app", required=True, help="The app to bind (Tsuru's app name).")
@click.option("--app-host", default="", help="The app's host name, as Tsuru sends it.")
@click.option("--shell", is_flag=True, help="Print `export K=V` lines, for eval.")
@json_option
@pass_cli
def bind(cli: CliContext, name: str, app: str, app_host: str, shell: bool) -> None:
    """Bind APP to NAME and print the env vars the app receives.

    \b
    eval "$(pushaas instance bind mypush --app myapp --shell)"
    """
    if shell and cli.json:
        raise click.UsageError("--shell and --json exclude each other")
    env = cli.broker_client().bind_app(name, app, app_host)

    if cli.json:
        output.emit_json(env)
        return
    for key, value in env.items():
        output.line(f"export {key}={shlex.quote(value)}" if shell else f"{key}={value}")
