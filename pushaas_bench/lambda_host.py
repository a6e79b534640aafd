"""The push-api as Lambda runs it: one call of the Chalice app per request, in its own process.

``chalice local`` is a development server: per request it fakes API Gateway in pure Python
and logs a line, which costs more CPU than the handler itself and makes it, not PushaaS,
the bottleneck at a thousand publishes per second on two cores. Production has API Gateway
in front and the Lambda runtime invoking ``app.app(event, context)``; this host does the
second part only, over kept-alive HTTP/1.1 on loopback, so an end-to-end run measures the
handler, Redis, the agent and nginx rather than the development server.

    python -m pushaas_bench.lambda_host PORT     (the app's PUSHAAS_* settings in the env)
"""

import asyncio
import json
import sys
from collections.abc import Callable

MAX_REQUEST_BYTES = 1 << 20
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
           401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}

Invoke = Callable[[str, str, dict[str, str], bytes], dict]


def invoker() -> Invoke:
    """A function turning one HTTP request into one call of the app's Lambda handler."""
    from chalice.local import LambdaContext, LambdaEventConverter, RouteMatcher

    import app

    converter = LambdaEventConverter(RouteMatcher(list(app.app.routes)),
                                     app.app.api.binary_types)

    def invoke(method: str, path: str, headers: dict[str, str], body: bytes) -> dict:
        event = converter.create_lambda_event(method, path, headers, body)
        context = LambdaContext("api_handler", 512, max_runtime_ms=29_000)
        return app.app(event, context)

    return invoke


class HostProtocol(asyncio.Protocol):
    """Kept-alive HTTP/1.1 requests with Content-Length bodies, answered in order."""

    def __init__(self, invoke: Invoke):
        self.invoke = invoke
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            length = int(_header(headers, "content-length") or 0)
            if length > MAX_REQUEST_BYTES or len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, path, _ = head[0].split(" ", 2)
            self._answer(self.invoke(method, path, headers, body))

    def _answer(self, response: dict) -> None:
        assert self.transport is not None
        status = int(response["statusCode"])
        body = response.get("body") or ""
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        for name, value in (response.get("headers") or {}).items():
            if name.lower() not in ("content-length", "connection"):
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(payload)}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


async def serve(port: int) -> None:
    invoke = invoker()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HostProtocol(invoke), "127.0.0.1", port)
    print(f"lambda host ready port={port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
