"""The Tsuru service manifest of a deployed PushaaS, for ``tsuru service-create``.

The broker password exists only in the stage's Secrets Manager secret. This module reads
it at run time and prints the manifest to stdout, so the usual call keeps it off the
disk entirely::

    tsuru service-create <(make -s manifest STACK=pushaas-prod)

With ``--output FILE`` it writes a new file of mode 0600 instead (refusing to overwrite
one); delete it once Tsuru has the service.
"""

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

SERVICE_ID = "pushaas"
CHALICE_CONFIG = Path(__file__).resolve().parent.parent / ".chalice" / "config.json"


class ManifestError(Exception):
    """The manifest cannot be built; the message says what to fix (never a secret)."""


@dataclass(frozen=True)
class Manifest:
    username: str
    endpoint: str
    password: str = field(repr=False)

    def render(self) -> str:
        """YAML for Tsuru. Values are JSON strings, which YAML reads as double-quoted
        scalars, so no password character can break the document."""
        return (f"id: {SERVICE_ID}\n"
                f"username: {json.dumps(self.username)}\n"
                f"password: {json.dumps(self.password)}\n"
                f"endpoint:\n"
                f"  production: {json.dumps(self.endpoint)}\n")


def broker_username(stage: str, config_path: Path = CHALICE_CONFIG) -> str:
    """The username the deployed app expects: the stage's PUSHAAS_BROKER_USERNAME."""
    config = json.loads(config_path.read_text())
    if stage not in config.get("stages", {}):
        raise ManifestError(f"stage {stage!r} is not in {config_path.name}")

    variables = {**config.get("environment_variables", {}),
                 **config["stages"][stage].get("environment_variables", {})}
    return variables.get("PUSHAAS_BROKER_USERNAME") or SERVICE_ID


def endpoint_url(url: str) -> str:
    """The API URL Tsuru calls, without the trailing slash (Tsuru appends /resources)."""
    url = url.strip().rstrip("/")
    if not url.startswith("https://"):
        raise ManifestError(f"the endpoint must be an https:// URL, not {url!r}")
    return url


def stack_outputs(stack: str, client: Any) -> Mapping[str, str]:
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise ManifestError(f"cannot read stack {stack}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def broker_password(secret_id: str, client: Any) -> str:
    """The ``broker_password`` key of the stage's secret; errors name the secret only."""
    try:
        raw = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ManifestError(f"cannot read secret {secret_id}: {code}") from None
    except BotoCoreError as exc:
        raise ManifestError(f"cannot read secret {secret_id}: {type(exc).__name__}") from None

    try:
        password = json.loads(raw).get("broker_password")
    except (ValueError, AttributeError):
        password = None
    if not isinstance(password, str) or not password:
        raise ManifestError(f"secret {secret_id} has no broker_password")
    return password


def build(stage: str, endpoint: str | None = None, stack: str | None = None,
          secret_id: str | None = None, session: Any | None = None) -> Manifest:
    """The manifest from an explicit endpoint or the stack's outputs, and the secret.

    Without ``--secret`` the secret is the stack's ``SecretArn`` output, else the name
    the stack gives it (``pushaas/<stage>``).
    """
    session = session or boto3.session.Session()

    outputs = stack_outputs(stack, session.client("cloudformation")) if stack else {}
    endpoint = endpoint or outputs.get("EndpointURL")
    if not endpoint:
        raise ManifestError("give the API URL (--endpoint / ENDPOINT=) or the stack "
                            "(--stack / STACK=) whose EndpointURL output has it")

    endpoint = endpoint_url(endpoint)
    username = broker_username(stage)

    secret_id = secret_id or outputs.get("SecretArn") or f"pushaas/{stage}"
    password = broker_password(secret_id, session.client("secretsmanager"))
    return Manifest(username=username, endpoint=endpoint, password=password)


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only; an existing file is an error, so a
    stale manifest is never silently reused or widened."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pushaas_tools.manifest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod", help="Chalice stage (default: prod)")
    parser.add_argument("--endpoint", help="the deployed API URL")
    parser.add_argument("--stack", help="CloudFormation stack to read EndpointURL and "
                                        "SecretArn from")
    parser.add_argument("--secret", dest="secret_id", help="secret name or ARN")
    parser.add_argument("--output", type=Path,
                        help="write a new 0600 file instead of stdout (delete it after use)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        manifest = build(args.stage, args.endpoint, args.stack, args.secret_id)
        if args.output:
            write_private(args.output, manifest.render())
        else:
            sys.stdout.write(manifest.render())
    except (ManifestError, FileExistsError) as exc:
        print(f"manifest: {exc}", file=sys.stderr)
        return 1

    if args.output:
        print(f"manifest: wrote {args.output} (mode 0600); delete it after "
              f"`tsuru service-create {args.output}`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
