"""The ``pushaas`` command: global options, the command tree, and exit codes.

Every failure ends here as one ``error: ...`` line on stderr and an exit code from
``pushaas.cli.exit_codes``; no traceback reaches the terminal unless PUSHAAS_DEBUG is
set.
"""

import os
import sys
import traceback

import click

from pushaas.cli import exit_codes, output
from pushaas.cli.channels import channels
from pushaas.cli.context import CliContext, json_option
from pushaas.cli.dev import dev
from pushaas.cli.instances import instance
from pushaas.cli.manifest import manifest
from pushaas.cli.messages import publish, subscribe
from pushaas.cli.stats import stats
from pushaas.errors import ConfigurationError, ConnectionFailed, PushaasError, Unauthorized
from pushaas.version import __version__

EPILOG = """\b
Exit codes: 0 ok, 1 API error (4xx/5xx) or failed instance, 2 usage error,
3 endpoint unreachable, 4 authentication failed, 5 timeout (instance wait)."""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.option("--endpoint", envvar="PUSHAAS_ENDPOINT", metavar="URL",
              help="The PushaaS API URL.  [env: PUSHAAS_ENDPOINT]")
@click.option("--username", envvar="PUSHAAS_USERNAME",
              help="Publisher user (a bound app's).  [env: PUSHAAS_USERNAME]")
@click.option("--password", envvar="PUSHAAS_PASSWORD",
              help="Publisher secret.  [env: PUSHAAS_PASSWORD]")
@click.option("--broker-username", envvar="PUSHAAS_BROKER_USERNAME", default="pushaas",
              show_default=True, help="Broker user.  [env: PUSHAAS_BROKER_USERNAME]")
@click.option("--broker-password", envvar="PUSHAAS_BROKER_PASSWORD",
              help="Broker password, for instance commands.  [env: PUSHAAS_BROKER_PASSWORD]")
@click.option("--push-stream-url", envvar="PUSHAAS_PUSH_STREAM_URL", metavar="URL",
              help="Where subscribe connects (default: asked from the API).  "
                   "[env: PUSHAAS_PUSH_STREAM_URL]")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds allowed for each HTTP request.")
@json_option
@click.version_option(__version__, prog_name="pushaas")
@click.pass_context
def cli(ctx: click.Context, endpoint: str | None, username: str | None,
        password: str | None, broker_username: str, broker_password: str | None,
        push_stream_url: str | None, timeout: float) -> None:
    """PushaaS from the command line: instances, messages, channels and stats.

    Publisher commands (publish, channels, stats, subscribe) use a bound app's
    PUSHAAS_* variables; instance commands use the broker's credentials.
    """
    state = ctx.ensure_object(CliContext)
    state.endpoint = endpoint
    state.username = username
    state.password = password
    state.broker_username = broker_username
    state.broker_password = broker_password
    state.push_stream_url = push_stream_url
    state.timeout = timeout
    ctx.call_on_close(state.close)


for command in (instance, publish, subscribe, channels, stats, dev, manifest):
    cli.add_command(command)


def _usage_message(exc: click.UsageError) -> str:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return exc.format_message() + hint


def _api_message(exc: PushaasError) -> str:
    return exc.message if exc.status is None else f"{exc.message} (HTTP {exc.status})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        result = cli.main(args=argv, prog_name="pushaas", standalone_mode=False)
    except click.Abort:
        return exit_codes.INTERRUPTED
    except click.UsageError as exc:
        output.error(_usage_message(exc))
        return exit_codes.USAGE
    except click.ClickException as exc:
        output.error(exc.format_message())
        return exc.exit_code
    except exit_codes.CliFailure as exc:
        output.error(exc.message)
        return exc.code
    except ConfigurationError as exc:
        output.error(str(exc))
        return exit_codes.USAGE
    except Unauthorized as exc:
        output.error(f"authentication failed: {_api_message(exc)}")
        return exit_codes.AUTH_FAILED
    except ConnectionFailed as exc:
        output.error(_api_message(exc))
        return exit_codes.UNREACHABLE
    except PushaasError as exc:
        output.error(_api_message(exc))
        return exit_codes.API_ERROR
    except BrokenPipeError:
        # The reader went away (`pushaas subscribe ... | head`): nothing left to say, and
        # the interpreter's last flush of stdout must not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.OK
    except Exception as exc:
        if os.environ.get("PUSHAAS_DEBUG"):
            traceback.print_exc()
        output.error(f"unexpected {type(exc).__name__}: {exc} (PUSHAAS_DEBUG=1 shows where)")
        return exit_codes.API_ERROR
    return result if isinstance(result, int) else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
