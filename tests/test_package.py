"""The deployable AWS package: what `make package` builds, linted and inspected.

The package is built once per module by ``scripts/package.sh`` (the command `make
package` runs). The merged SAM template is linted with cfn-lint, then expanded locally
with aws-sam-translator, the transform CloudFormation itself runs on deploy, so the
checks below look at the resources AWS would really create: the SQS event source, the
EventBridge rules, the queue's redrive, the functions' network and environment.
"""

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
STAGE = "prod"
FUNCTIONS = {"APIHandler": "api_handler", "HandleJob": "handle_job",
             "HandleEcsEvent": "handle_ecs_event", "Reconcile": "reconcile"}

# The runtime configuration contract: every function gets these (docs/operations.md).
CONTRACT_VARIABLES = {
    "PUSHAAS_PROVISIONER", "PUSHAAS_JOB_QUEUE", "PUSHAAS_JOBS_QUEUE_URL",
    "PUSHAAS_JOB_ATTEMPTS", "PUSHAAS_SECRETS_ARN", "PUSHAAS_BROKER_USERNAME",
    "PUSHAAS_ECS_CLUSTER", "PUSHAAS_ECS_SUBNETS", "PUSHAAS_ECS_SECURITY_GROUPS",
    "PUSHAAS_ECS_ASSIGN_PUBLIC_IP", "PUSHAAS_ECS_EXECUTION_ROLE_ARN",
    "PUSHAAS_ECS_TASK_ROLE_ARN", "PUSHAAS_PUSH_STREAM_IMAGE", "PUSHAAS_PUSH_AGENT_IMAGE",
    "PUSHAAS_ECS_LOG_GROUP", "PUSHAAS_VPC_ID", "PUSHAAS_LB_LISTENER_ARN",
    "PUSHAAS_PUSH_STREAM_DOMAIN", "PUSHAAS_AGENT_REDIS_SECRET_ARN",
}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "out"
    result = subprocess.run(
        ["scripts/package.sh", STAGE, str(out)], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHON": sys.executable}, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def sam(package_dir: Path) -> dict[str, Any]:
    """The merged template as `make package` writes it."""
    return yaml.safe_load((package_dir / "sam.yaml").read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform, with the code location `aws cloudformation
    package` would have put in."""
    template = json.loads(json.dumps(sam))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/deployment.zip"

    session = boto3.session.Session(region_name="us-east-1")
    translator = Translator({}, Parser(), boto_session=session)
    return translator.translate(template, parameter_values={})


@pytest.fixture(scope="module")
def stage_config() -> dict[str, Any]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return config["stages"][STAGE]


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def run_cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cfn-lint"), "--", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_merged_template_passes_cfn_lint(package_dir):
    result = run_cfn_lint(package_dir / "sam.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_network_template_for_an_empty_account_passes_cfn_lint():
    result = run_cfn_lint(ROOT / "infra" / "network.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_transformed_template_passes_cfn_lint(cfn, tmp_path):
    path = tmp_path / "transformed.json"
    path.write_text(json.dumps(cfn))

    result = run_cfn_lint(path)

    assert result.returncode == 0, result.stdout + result.stderr


def test_stage_parameter_is_pinned_to_the_packaged_stage(sam):
    assert sam["Parameters"]["Stage"]["AllowedValues"] == [STAGE]
    assert sam["Parameters"]["Stage"]["Default"] == STAGE


def test_job_handler_reads_the_stacks_jobs_queue(cfn):
    mappings = resources_of(cfn, "AWS::Lambda::EventSourceMapping")

    assert len(mappings) == 1
    (mapping,) = mappings.values()
    assert mapping["Properties"]["FunctionName"] == {"Ref": "HandleJob"}
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::Sub": "${JobsQueue.Arn}"}
    assert mapping["Properties"]["BatchSize"] == 1
    assert "pushaas-jobs" not in json.dumps(mapping)


def test_jobs_queue_dead_letters_after_the_apps_attempts(cfn, stage_config):
    queue = cfn["Resources"]["JobsQueue"]["Properties"]
    attempts = int(stage_config["environment_variables"]["PUSHAAS_JOB_ATTEMPTS"])

    assert queue["QueueName"] == {"Fn::Sub": "pushaas-jobs-${Stage}"}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == attempts == 3
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    assert cfn["Resources"]["JobsDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"


def test_a_job_stays_invisible_longer_than_the_job_function_runs(cfn):
    visibility = cfn["Resources"]["JobsQueue"]["Properties"]["VisibilityTimeout"]
    timeout = cfn["Resources"]["HandleJob"]["Properties"]["Timeout"]

    assert timeout >= 120
    assert visibility > timeout


def test_ecs_task_state_changes_of_this_cluster_reach_the_event_handler(cfn):
    rules = [r["Properties"] for r in resources_of(cfn, "AWS::Events::Rule").values()
             if "EventPattern" in r["Properties"]]

    assert len(rules) == 1
    pattern = rules[0]["EventPattern"]
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == [{"Fn::GetAtt": ["Cluster", "Arn"]}]
    assert pattern["detail"]["group"] == [{"prefix": "service:pushaas-"}]
    assert rules[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["HandleEcsEvent", "Arn"]}


def test_unknown_routes_get_a_json_404_that_quotes_nothing_of_the_request(cfn):
    [api] = resources_of(cfn, "AWS::ApiGateway::RestApi").values()
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]

    assert missing["statusCode"] == 404
    template = missing["responseTemplates"]["application/json"]
    assert json.loads(template) == {"code": 404, "message": "no such route"}
    assert api["Properties"]["Body"]["paths"], "the merge kept Chalice's routes"


def test_reconcile_runs_every_minute(cfn):
    schedules = [r["Properties"] for r in resources_of(cfn, "AWS::Events::Rule").values()
                 if "ScheduleExpression" in r["Properties"]]

    assert [s["ScheduleExpression"] for s in schedules] == ["rate(1 minute)"]
    assert schedules[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["Reconcile", "Arn"]}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_runs_in_the_vpc_with_the_whole_contract(cfn, logical_id):
    function = cfn["Resources"][logical_id]["Properties"]

    assert function["VpcConfig"] == {
        "SecurityGroupIds": [{"Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]}],
        "SubnetIds": {"Ref": "PrivateSubnetIds"}}
    variables = function["Environment"]["Variables"]
    assert CONTRACT_VARIABLES <= set(variables)
    assert variables["PUSHAAS_PROVISIONER"] == "ecs"
    assert variables["PUSHAAS_JOB_QUEUE"] == "sqs"
    assert variables["PUSHAAS_AGENT_REDIS_SECRET_ARN"] == {
        "Fn::Sub": "${AppSecret}:redis_url::"}


def test_each_function_writes_to_its_own_retained_log_group(cfn):
    for logical_id, name in FUNCTIONS.items():
        function = cfn["Resources"][logical_id]
        group = cfn["Resources"][f"{logical_id.replace('APIHandler', 'ApiHandler')}LogGroup"]
        suffix = "" if name == "api_handler" else f"-{name}"

        assert function["Properties"]["FunctionName"] == {"Fn::Sub": f"pushaas-${{Stage}}{suffix}"}
        assert group["Properties"]["LogGroupName"] == {
            "Fn::Sub": f"/aws/lambda/pushaas-${{Stage}}{suffix}"}
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_no_secret_value_is_in_the_template(sam):
    secrets = resources_of(sam, "AWS::SecretsManager::Secret")
    composed = secrets["AppSecret"]["Properties"]["SecretString"]["Fn::Sub"]
    auth_token = sam["Resources"]["Redis"]["Properties"]["AuthToken"]["Fn::Sub"]

    for name, secret in secrets.items():
        if name != "AppSecret":
            assert "SecretString" not in secret["Properties"]
            assert "GenerateSecretString" in secret["Properties"]
    variables = re.sub(r"\$\{[^}]+\}", "X", composed)
    assert json.loads(re.sub(r"\{\{resolve:secretsmanager:X:[^}]+\}\}", "<ref>", variables)) == {
        "broker_password": "<ref>", "master_key": "<ref>",
        "redis_url": "rediss://:<ref>@X:X/0"}
    assert re.fullmatch(r"\{\{resolve:secretsmanager:\$\{\w+\}:SecretString:\w+\}\}", auth_token)

    for text in strings_in(sam):
        assert not re.search(r"rediss?://:[^{]", text)
    for logical_id in FUNCTIONS:
        variables = sam["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
        assert not {"PUSHAAS_BROKER_PASSWORD", "PUSHAAS_MASTER_KEY",
                    "PUSHAAS_REDIS_URL"} & set(variables)


def role_actions(cfn: dict[str, Any], role: str) -> set[str]:
    policies = cfn["Resources"][role]["Properties"]["Policies"]
    return {a for policy in policies for s in policy["PolicyDocument"]["Statement"]
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


@pytest.mark.parametrize("role, queue_action", [
    ("ApiHandlerRole", "sqs:SendMessage"), ("HandleEcsEventRole", None)])
def test_api_and_event_functions_cannot_touch_ecs_load_balancers_or_roles(cfn, role,
                                                                          queue_action):
    actions = role_actions(cfn, role)

    assert not {a for a in actions if a.split(":")[0] in {"ecs", "elasticloadbalancing", "iam"}}
    assert {a for a in actions if a.startswith("sqs:")} == ({queue_action} - {None})
    assert "secretsmanager:GetSecretValue" in actions


def test_only_the_job_function_consumes_the_queue_and_only_it_and_reconcile_provision(cfn):
    job, reconcile = role_actions(cfn, "HandleJobRole"), role_actions(cfn, "ReconcileRole")

    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= job
    assert "sqs:SendMessage" not in job
    assert {"ecs:CreateService", "iam:PassRole"} <= job & reconcile


def test_pass_role_is_limited_to_the_task_roles_and_ecs_tasks(cfn):
    role = cfn["Resources"]["HandleJobRole"]["Properties"]
    statements = [s for policy in role["Policies"]
                  for s in policy["PolicyDocument"]["Statement"] if "iam:PassRole" in s["Action"]]

    assert len(statements) == 1
    assert statements[0]["Resource"] == [{"Fn::GetAtt": ["TaskExecutionRole", "Arn"]},
                                         {"Fn::GetAtt": ["TaskRole", "Arn"]}]
    assert statements[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_deployment_zip_holds_the_app_and_redis_only(package_dir):
    archive = package_dir / "deployment.zip"
    with zipfile.ZipFile(archive) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}

    assert archive.stat().st_size < 2_000_000
    assert {"app.py", "chalicelib", "redis"} <= top
    assert not top & {"tests", "pushaas_local", "containers", ".chalice", "infra", "docs"}


def snake_to_pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def provisioner_actions() -> set[str]:
    """The IAM actions of every ECS, ELB and SSM call in chalicelib/ecs/, tagging included
    (tags passed on create need ecs:TagResource / elasticloadbalancing:AddTags)."""
    prefixes = {"ecs": "ecs", "elbv2": "elasticloadbalancing", "ssm": "ssm"}
    actions: set[str] = set()
    for path in (ROOT / "chalicelib" / "ecs").glob("*.py"):
        source = path.read_text()
        for client, call in re.findall(r"\b(ecs|elbv2|ssm)\.(\w+)\(", source):
            if call != "get_paginator":
                actions.add(f"{prefixes[client]}:{snake_to_pascal(call)}")
        for client, call in re.findall(r"\b(ecs|elbv2)\.get_paginator\(\"(\w+)\"\)", source):
            actions.add(f"{prefixes[client]}:{snake_to_pascal(call)}")
        if re.search(r"\btags=", source):
            actions.add("ecs:TagResource")
        if re.search(r"\bTags=", source):
            actions.add("elasticloadbalancing:AddTags")
    return actions


def test_worker_policy_allows_exactly_what_the_provisioner_calls():
    policy = json.loads((ROOT / ".chalice" / "policy-worker.json").read_text())
    allowed = {a for s in policy["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
               if a.split(":")[0] in {"ecs", "elasticloadbalancing", "ssm"}}

    assert allowed == provisioner_actions()
