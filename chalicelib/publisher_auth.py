"""Who is publishing: map push-api Basic credentials to exactly one instance.

The user name is the instance name and the password its derived secret. Unknown
users, wrong passwords and instances being removed all get the same 401, so the API
does not reveal which instance names exist.
"""

from collections.abc import Mapping

from chalicelib.credentials import parse_basic, publisher_secret, same
from chalicelib.errors import Unauthorized
from chalicelib.instances import Instance, Status, is_valid_name
from chalicelib.services import Services

# Compared against when the user is unknown, so both paths do the same work.
_DECOY = "x" * 43


def authenticate(svc: Services, headers: Mapping[str, str]) -> Instance:
    user, password = parse_basic(headers)
    instance = svc.store.find(user) if is_valid_name(user) else None

    if instance is None or instance.status is Status.REMOVING:
        same(password, _DECOY)
        raise Unauthorized()

    expected = publisher_secret(svc.settings.master_key.reveal(), instance.name, instance.salt)
    if not same(password, expected):
        raise Unauthorized()
    return instance
