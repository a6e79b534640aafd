"""``pushaas manifest``: the Tsuru service manifest, from the operators' generator.

``pushaas_tools/manifest.py`` (in the checkout, not in this package) owns the manifest
format and reads the broker password from the deployed stage's Secrets Manager secret;
this command wraps it. When the broker password is given here instead, the same
generator renders it without AWS. Either way the manifest goes to stdout only.
"""

import sys
from types import ModuleType

import click

from pushaas.cli import output
from pushaas.cli.checkout import require_checkout
from pushaas.cli.context import CliContext, json_option, pass_cli
from pushaas.cli.exit_codes import USAGE, CliFailure


def _generator() -> ModuleType:
    checkout = require_checkout("manifest")
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from pushaas_tools import manifest
    except ImportError as exc:
        raise CliFailure(f"the manifest generator cannot load ({exc}): use the pushaas "
                         "installed in the checkout's .venv", USAGE) from None
    return manifest


@click.command("manifest")
@click.option("--endpoint", "api_url", metavar="URL",
              help="The deployed API's https:// URL (not PUSHAAS_ENDPOINT).")
@click.option("--stage", default="prod", show_default=True, help="Chalice stage.")
@click.option("--stack", help="CloudFormation stack whose outputs give the URL and secret.")
@click.option("--secret", "secret_id", help="Secrets Manager secret name or ARN.")
@json_option
@pass_cli
def manifest(cli: CliContext, api_url: str | None, stage: str, stack: str | None,
             secret_id: str | None) -> None:
    """Print the manifest for `tsuru service-create <(pushaas manifest ...)`.

    The password comes from --broker-password / PUSHAAS_BROKER_PASSWORD when given with
    --endpoint (and neither --stack nor --secret); otherwise from the stage's secret in
    AWS. Runs from a PushaaS checkout. Nothing is written to disk.
    """
    generator = _generator()
    try:
        if cli.broker_password and api_url and not (stack or secret_id):
            document = generator.Manifest(username=cli.broker_username,
                                          endpoint=generator.endpoint_url(api_url),
                                          password=cli.broker_password)
        else:
            document = generator.build(stage, api_url, stack, secret_id)
    except generator.ManifestError as exc:
        raise CliFailure(str(exc)) from None
    except generator.BotoCoreError as exc:
        raise CliFailure(f"cannot reach AWS for the manifest: {exc}") from None

    if cli.json:
        output.emit_json({"id": generator.SERVICE_ID, "username": document.username,
                          "password": document.password,
                          "endpoint": {"production": document.endpoint}})
    else:
        click.echo(document.render(), nl=False)
