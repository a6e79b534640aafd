"""What the exit status of ``pushaas`` means; scripts branch on these, so they are fixed.

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | the API answered with an error (4xx/5xx other than 401), or an instance failed |
| 2 | usage error: a bad option or argument, a missing setting |
| 3 | the endpoint is unreachable or the connection broke |
| 4 | authentication failed (401) |
| 5 | timeout (``instance wait``) |
| 130 | interrupted (Ctrl-C) where that is not the normal way out |
"""

OK = 0
API_ERROR = 1
USAGE = 2
UNREACHABLE = 3
AUTH_FAILED = 4
TIMEOUT = 5
INTERRUPTED = 130


class CliFailure(Exception):
    """A command cannot do what was asked; ``message`` is the whole explanation."""

    def __init__(self, message: str, code: int = API_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code
