"""``pushaas dev``: the whole system on this machine, exactly as ``make run`` runs it.

It replaces itself with ``python -m pushaas_local.stack`` (same interpreter, started in
the checkout's root), so Ctrl-C and the exit status are the stack's own.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import click

from pushaas.cli import output
from pushaas.cli.checkout import require_checkout
from pushaas.cli.context import CliContext, json_option, pass_cli
from pushaas.cli.exit_codes import USAGE, CliFailure

STACK_MODULE = "pushaas_local.stack"


def _check_interpreter() -> None:
    """The stack needs the development packages next to this interpreter."""
    chalice = Path(sys.executable).parent / "chalice"
    if importlib.util.find_spec("redis") is None or not chalice.exists():
        raise CliFailure(
            f"{sys.executable} lacks the development packages (redis, chalice): run "
            "`make run`, or use the pushaas installed in the checkout's .venv", USAGE)


def _broker_password(checkout: Path) -> str:
    """The local stack's broker password, as the stack itself derives it."""
    printed = subprocess.run([sys.executable, "-m", STACK_MODULE, "--broker-password"],
                             cwd=checkout, capture_output=True, text=True, timeout=30)
    if printed.returncode != 0:
        raise CliFailure(f"the stack cannot say its password: {printed.stdout.strip()}")
    return printed.stdout.strip()


@click.command("dev")
@click.option("--print-broker-password", "print_password", is_flag=True,
              help="Print the local stack's broker password and exit.")
@json_option
@pass_cli
def dev(cli: CliContext, print_password: bool) -> None:
    """Run the local stack (Redis, the API, the runner) in the foreground, as `make run`.

    Must be run from a PushaaS checkout, with the pushaas installed in its .venv
    (scripts/bootstrap.sh installs it). Settings: PUSHAAS_API_PORT, PUSHAAS_STATE_DIR and
    the other variables of the README. Ctrl-C stops everything. Its output is the
    stack's log, so --json applies to --print-broker-password only.
    """
    checkout = require_checkout("dev")
    _check_interpreter()

    if print_password:
        password = _broker_password(checkout)
        if cli.json:
            output.emit_json({"broker_password": password})
        else:
            output.line(password)
        return
    if cli.json:
        raise click.UsageError("the stack's output is a log: --json needs "
                               "--print-broker-password")

    os.chdir(checkout)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", STACK_MODULE])
