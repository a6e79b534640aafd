"""EventSource subscribers cheap enough to outnumber what nginx can serve.

A worker process holds thousands of raw asyncio connections (uvloop when installed). Each
connection only sends its GET and then looks for the ``seq=<n>;`` marker every benchmark
message carries, timestamping the chunk it arrived in: no HTTP client, no JSON parsing.

The parent drives workers over stdin/stdout, one JSON object per line:

    {"connect": ["/ev/a", "/ev/b", ...]}   ->  {"connected": total, "failed": total}
    {"collect": true}                       ->  {"events": n, "messages": {seq: [n, t0, t1]}}
    {"stop": true}                          ->  the same as collect, then every socket closes

where ``t0``/``t1`` are the first and last arrival (time.monotonic_ns) of message ``seq``.
"""

import asyncio
import json
import resource
import socket
import struct
import sys
import time

CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT = 10.0
MARKER = b"seq="
LINGER_RESET = struct.pack("ii", 1, 0)
"""Close with a reset: thousands of client sockets in TIME_WAIT would use up local ports."""


class Subscriber(asyncio.Protocol):
    def __init__(self, worker: "Worker", request: bytes):
        self.worker = worker
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.subscribed = asyncio.get_running_loop().create_future()
        self.head = b""
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.subscribed.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
            self.subscribed.set_result(ok)
            data, self.head = self.head[end + 4:], b""
            if not data:
                return
        self.worker.seen(self.tail + data, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(False)
        self.worker.lost += 1

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            self.transport.close()


class Worker:
    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.subscribers: list[Subscriber] = []
        self.failed = 0
        self.lost = 0
        self.events = 0
        self.messages: dict[int, list[int]] = {}

    def seen(self, buffer: bytes, subscriber: Subscriber) -> None:
        """Record every complete marker in ``buffer``; keep a cut-off one for next time."""
        now = time.monotonic_ns()
        position = 0
        while (start := buffer.find(MARKER, position)) >= 0:
            end = buffer.find(b";", start)
            if end < 0:
                break
            position = end + 1
            self.events += 1
            seq = int(buffer[start + 4:end])
            record = self.messages.get(seq)
            if record is None:
                self.messages[seq] = [1, now, now]
            else:
                record[0] += 1
                record[2] = now
        subscriber.tail = buffer[max(position, len(buffer) - 16):]

    async def connect(self, paths: list[str]) -> None:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
        await asyncio.gather(*(self._connect_one(path, slots) for path in paths))

    async def _connect_one(self, path: str, slots: asyncio.Semaphore) -> None:
        request = (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        async with slots:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    _, subscriber = await loop.create_connection(
                        lambda: Subscriber(self, request), self.host, self.port)
                    ok = await subscriber.subscribed
            except (OSError, TimeoutError):
                ok = False
        if ok:
            self.subscribers.append(subscriber)
        else:
            self.failed += 1

    def collect(self) -> dict:
        """What arrived since the last collect."""
        report = {"events": self.events, "lost": self.lost, "messages": self.messages}
        self.events, self.lost, self.messages = 0, 0, {}
        return report

    def close(self) -> None:
        for subscriber in self.subscribers:
            subscriber.close()


async def serve(host: str, port: int) -> None:
    """Answer the parent's commands until it says stop or closes stdin."""
    worker = Worker(host, port)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if "connect" in command:
            await worker.connect(command["connect"])
            _reply({"connected": len(worker.subscribers), "failed": worker.failed})
        elif command.get("collect"):
            _reply(worker.collect())
        elif command.get("stop"):
            break

    _reply(worker.collect())
    worker.close()
    await asyncio.sleep(0.05)


def _reply(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    _raise_file_limit()
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(serve(host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
