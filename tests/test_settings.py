"""Settings from the environment, and secrets from AWS Secrets Manager (moto)."""

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.errors import ConfigError
from chalicelib.secrets import fetch_secret
from chalicelib.settings import from_env, log_level

BASE = {"PUSHAAS_REDIS_URL": "redis://127.0.0.1:1/0", "PUSHAAS_BROKER_PASSWORD": "pw",
        "PUSHAAS_MASTER_KEY": "k" * 40}


@pytest.mark.parametrize("change, fragment", [
    ({"PUSHAAS_REDIS_URL": ""}, "PUSHAAS_REDIS_URL"),
    ({"PUSHAAS_BROKER_PASSWORD": " "}, "PUSHAAS_BROKER_PASSWORD"),
    ({"PUSHAAS_MASTER_KEY": "short"}, "PUSHAAS_MASTER_KEY"),
    ({"PUSHAAS_PROVISIONER": "k8s"}, "PUSHAAS_PROVISIONER"),
    ({"PUSHAAS_JOB_QUEUE": "sqs"}, "PUSHAAS_JOBS_QUEUE_URL"),
    ({"PUSHAAS_ENDPOINT": "ftp://x"}, "PUSHAAS_ENDPOINT"),
    ({"PUSHAAS_REDIS_TIMEOUT": "soon"}, "PUSHAAS_REDIS_TIMEOUT"),
    ({"PUSHAAS_REDIS_TIMEOUT": "nan"}, "PUSHAAS_REDIS_TIMEOUT"),
    ({"PUSHAAS_REDIS_TIMEOUT": "inf"}, "PUSHAAS_REDIS_TIMEOUT"),
    ({"PUSHAAS_JOB_ATTEMPTS": "0.5"}, "PUSHAAS_JOB_ATTEMPTS"),
    ({"PUSHAAS_JOB_ATTEMPTS": "1e300"}, "PUSHAAS_JOB_ATTEMPTS"),
    ({"PUSHAAS_JOB_ATTEMPTS": "inf"}, "PUSHAAS_JOB_ATTEMPTS"),
    ({"PUSHAAS_REDIS_MIN_REPLICAS": "\u00b2"}, "PUSHAAS_REDIS_MIN_REPLICAS"),
    ({"PUSHAAS_REDIS_URL": "localhost:6379"}, "PUSHAAS_REDIS_URL"),
    ({"PUSHAAS_REDIS_URL": "redis://h:abc"}, "PUSHAAS_REDIS_URL"),
    ({"PUSHAAS_REDIS_URL": "redis://:secret@h:99999/0"}, "PUSHAAS_REDIS_URL"),
])
def test_bad_environment_fails_naming_the_variable(change, fragment):
    with pytest.raises(ConfigError, match=fragment) as failure:
        from_env({**BASE, **change})
    assert "secret" not in str(failure.value)


def test_log_level_takes_any_case_and_refuses_the_rest():
    assert log_level({"PUSHAAS_LOG_LEVEL": "debug"}) == "DEBUG"
    assert log_level({}) == "INFO"
    with pytest.raises(ConfigError, match="PUSHAAS_LOG_LEVEL"):
        log_level({"PUSHAAS_LOG_LEVEL": "bogus"})


def test_secrets_never_show_in_repr():
    settings = from_env(BASE)

    assert "pw" not in repr(settings) and "k" * 40 not in repr(settings)
    assert settings.broker_password.reveal() == "pw"


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager")


def test_secrets_come_from_secrets_manager(aws):
    secret = {"redis_url": "rediss://:token@redis:6379/0", "broker_password": "from-sm",
              "master_key": "s" * 48}
    arn = aws.create_secret(Name="pushaas", SecretString=json.dumps(secret))["ARN"]

    settings = from_env({"PUSHAAS_SECRETS_ARN": arn, "PUSHAAS_BROKER_PASSWORD": "ignored"})

    assert settings.broker_password.reveal() == "from-sm"
    assert settings.redis_url.reveal() == secret["redis_url"]


def test_unreadable_or_incomplete_secrets_fail_without_showing_values(aws):
    arn = aws.create_secret(Name="partial",
                            SecretString=json.dumps({"redis_url": "rediss://:tok@r/0"}))["ARN"]
    with pytest.raises(ConfigError, match="broker_password") as info:
        from_env({"PUSHAAS_SECRETS_ARN": arn})
    assert "tok" not in str(info.value)

    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        fetch_secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope")
    plain = aws.create_secret(Name="plain", SecretString="not json")["ARN"]
    with pytest.raises(ConfigError, match="not a JSON object"):
        fetch_secret(plain)
