"""`make manifest`: the Tsuru service manifest from the deployed stack, against moto."""

import json
import stat
from collections.abc import Iterator

import boto3
import pytest
import yaml
from moto import mock_aws

from pushaas_tools import manifest

API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/"
PASSWORD = 'p@ss "word": with yaml: #specials'
SECRET = {"broker_password": PASSWORD, "master_key": "m" * 64,
          "redis_url": "rediss://:token@redis.example:6379/0"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.session.Session()


def create_secret(session: boto3.session.Session, name: str = "pushaas/prod") -> str:
    client = session.client("secretsmanager")
    return client.create_secret(Name=name, SecretString=json.dumps(SECRET))["ARN"]


def create_stack(session: boto3.session.Session, secret_arn: str) -> None:
    template = {
        "Resources": {"JobsQueue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"EndpointURL": {"Value": API_URL}, "SecretArn": {"Value": secret_arn}},
    }
    session.client("cloudformation").create_stack(StackName="pushaas-prod",
                                                  TemplateBody=json.dumps(template))


def test_manifest_from_an_explicit_endpoint_reads_the_stage_secret(aws, capsys):
    create_secret(aws)

    code = manifest.main(["--stage", "prod", "--endpoint", API_URL])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert yaml.safe_load(out) == {
        "id": "pushaas", "username": "pushaas", "password": PASSWORD,
        "endpoint": {"production": API_URL.rstrip("/")}}


def test_manifest_from_the_stack_outputs(aws, capsys):
    arn = create_secret(aws, name="some-other-name")
    create_stack(aws, arn)

    code = manifest.main(["--stack", "pushaas-prod"])

    out, err = capsys.readouterr()
    assert code == 0, err
    parsed = yaml.safe_load(out)
    assert parsed["endpoint"]["production"] == API_URL.rstrip("/")
    assert parsed["password"] == PASSWORD


def test_output_file_is_private_and_never_overwritten(aws, capsys, tmp_path):
    create_secret(aws)
    target = tmp_path / "manifest.yaml"

    first = manifest.main(["--endpoint", API_URL, "--output", str(target)])
    second = manifest.main(["--endpoint", API_URL, "--output", str(target)])

    out, err = capsys.readouterr()
    assert (first, second) == (0, 1)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert yaml.safe_load(target.read_text())["password"] == PASSWORD
    assert PASSWORD not in out + err
    assert "delete it" in err


@pytest.mark.parametrize("argv, message", [
    (["--endpoint", API_URL], "cannot read secret pushaas/prod: ResourceNotFoundException"),
    ([], "give the API URL"),
    (["--endpoint", "http://insecure.example/api"], "must be an https:// URL"),
    (["--endpoint", API_URL, "--secret", "x"], "cannot read secret x: ResourceNotFound"),
    (["--stage", "qa", "--endpoint", API_URL], "stage 'qa' is not in config.json"),
])
def test_failures_say_what_to_fix_and_print_no_manifest(aws, capsys, argv, message):
    code = manifest.main(argv)

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert message in err


def test_a_secret_without_the_broker_password_is_refused(aws, capsys):
    aws.client("secretsmanager").create_secret(Name="pushaas/prod",
                                               SecretString=json.dumps({"master_key": "k"}))

    code = manifest.main(["--endpoint", API_URL])

    assert code == 1
    assert "has no broker_password" in capsys.readouterr().err


def test_the_manifest_never_shows_the_password_in_its_repr():
    built = manifest.Manifest(username="pushaas", endpoint=API_URL, password=PASSWORD)

    assert PASSWORD not in repr(built)
