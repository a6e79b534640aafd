"""One error hierarchy carrying HTTP statuses, turned into JSON in one place (the routes).

Raising one of these anywhere below a route gives the client
``{"code": <status>, "message": "..."}`` with that status; anything else is a 500
with a generic message and one log line.
"""


class ConfigError(Exception):
    """The service's own configuration (env, plans file) is wrong: fail at start."""


class PushaasError(Exception):
    status = 500
    message = "internal error"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}


class BadRequest(PushaasError):
    status = 400
    message = "bad request"


class Unauthorized(PushaasError):
    status = 401
    message = "invalid credentials"


class NotFound(PushaasError):
    status = 404
    message = "not found"


class Conflict(PushaasError):
    status = 409
    message = "already exists"


class PreconditionFailed(PushaasError):
    status = 412
    message = "instance is not ready"


class PayloadTooLarge(PushaasError):
    status = 413
    message = "request body too large"


class UnsupportedMediaType(PushaasError):
    status = 415
    message = "unsupported content type"


class TooManyRequests(PushaasError):
    status = 429
    message = "publish rate limit exceeded"


class Unavailable(PushaasError):
    status = 503
    message = "storage unavailable, try again"
