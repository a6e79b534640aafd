"""Fetching the service's own secrets from AWS Secrets Manager at run time."""

import json
from collections.abc import Mapping

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ConfigError


def fetch_secret(arn: str, client: object | None = None) -> Mapping[str, str]:
    """The JSON object stored in the secret ``arn``; ConfigError when it cannot be read.

    The error names the secret and the AWS error code, never the secret's value.
    """
    client = client or boto3.client("secretsmanager")
    try:
        raw = client.get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"cannot read secret {arn}: {code}") from None
    except (BotoCoreError, KeyError) as exc:
        raise ConfigError(f"cannot read secret {arn}: {type(exc).__name__}") from None

    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"secret {arn} is not a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {arn} is not a JSON object")
    return value
