"""An instance's subscribe key on AWS: a SecureString parameter its tasks read at start.

The key verifies the instance's private-channel tokens in the task's authorizer. It must
not sit in the task definition in plain text (anyone who may describe task definitions
would read it), and the task must never hold the master key (one compromised task could
then forge tokens, and publisher secrets, of every instance). So the provisioner derives
the key and keeps it in an SSM SecureString parameter named after the instance; the task
definition names the parameter's ARN in ``secrets``, and ECS decrypts it into the
authorizer's environment at start, with the execution role. Deprovisioning deletes it.
"""

import hmac
import logging
import re
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ecs import naming
from chalicelib.ecs.errors import error_code
from chalicelib.ecs.settings import EcsSettings

log = logging.getLogger(__name__)

ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{12}):role/")


def parameter_arn(settings: EcsSettings, name: str) -> str:
    """The parameter's ARN, known without a call: same account as the task roles."""
    match = ROLE_ARN.match(settings.execution_role_arn)
    assert match is not None, "EcsSettings validated the execution role ARN"
    partition, account = match.group("partition"), match.group("account")
    return (f"arn:{partition}:ssm:{settings.region}:{account}:parameter"
            f"{naming.subscribe_key_parameter(name)}")


def ensure(ssm: Any, name: str, key: str) -> None:
    """Store the key unless the parameter already holds it.

    Reading first keeps a periodic convergence from writing a new parameter version
    each time (SSM keeps only the last hundred, and writes are rate limited).
    """
    parameter = naming.subscribe_key_parameter(name)
    try:
        current = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        current = None

    if current is not None and hmac.compare_digest(current.encode(), key.encode()):
        return
    ssm.put_parameter(Name=parameter, Value=key, Type="SecureString", Overwrite=True,
                      Description=f"PushaaS subscribe key of instance {name}")
    log.info("subscribe key stored instance=%s parameter=%s", name, parameter)


def delete(ssm: Any, name: str) -> None:
    """Remove the parameter; harmless when it is already gone."""
    try:
        ssm.delete_parameter(Name=naming.subscribe_key_parameter(name))
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
