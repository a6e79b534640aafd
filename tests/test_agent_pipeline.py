"""push-agent's fast path: pipelined publishing against a scripted server, the response
splitter, and envelopes assembled from parts that must stay byte-identical to
``chalicelib.envelope.envelope``."""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import envelope
from tests import agent_helpers  # noqa: F401  (puts the agent's dir on sys.path)

# isort: split
from push_agent.entries import Planner, plan_batch
from push_agent.nchan import PublishRequests
from push_agent.pipeline import PipelinePool, ProtocolError, split_responses
from push_agent.publisher import Publisher, Resend, _resend_now

pytestmark = pytest.mark.timeout(30)

NGINX_202 = (b"HTTP/1.1 202 Accepted\r\nServer: nginx\r\nDate: Thu, 03 Dec 2026 19:30:49 GMT\r\n"
             b"Content-Type: text/json\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
             b'{"ok": true}')


# ---- envelopes ---------------------------------------------------------------------------


def _entry(entry_id: str, channels: list[str], text: str) -> tuple[str, dict[bytes, bytes]]:
    fields = envelope.entry_fields(channels, text)
    return entry_id, {key.encode(): value.encode() for key, value in fields.items()}


@pytest.mark.parametrize("text", [
    "plain", 'quote " and backslash \\', "controls \x00\x01\x1f \n\r\t\b\f", "é ü 漢字 🎉",
    "separators \u2028\u2029 and DEL \x7f", "</script>", "{}[]:,", " ",
], ids=lambda text: repr(text)[:20])
def test_envelope_bytes_are_those_of_chalicelib(text: str) -> None:
    entries = [_entry("1796326249001-0", ["a", "b.c:d@e~f-g_h"], text),
               _entry("1796326249001-1", ["a"], text)]

    plan = plan_batch("i", entries)

    assert plan["a"][0].body == envelope.envelope("1796326249001-0", "a", text)
    assert plan["a"][1].body == envelope.envelope("1796326249001-1", "a", text)
    assert plan["b.c:d@e~f-g_h"][0].body == envelope.envelope(
        "1796326249001-0", "b.c:d@e~f-g_h", text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
       millis=st.integers(0, 2 ** 46), sequence=st.integers(0, 2 ** 40))
def test_envelope_bytes_match_for_any_text_and_id(text: str, millis: int, sequence: int) -> None:
    entry_id = f"{millis}-{sequence}"

    plan = Planner("i").plan([_entry(entry_id, ["news"], text)])

    assert plan["news"][0].body == envelope.envelope(entry_id, "news", text)


def test_planner_remembers_channel_lists_and_still_skips_bad_entries() -> None:
    planner = Planner("i")
    bad = ("2-0", {b"c": b'["a/b"]', b"t": b"x"})

    first = planner.plan([_entry("1-0", ["a"], "one"), bad])
    second = planner.plan([bad, _entry("3-0", ["a"], "two")])

    assert [d.entry_id for d in first["a"]] == ["1-0"]
    assert [d.entry_id for d in second["a"]] == ["3-0"]
    assert set(first) == set(second) == {"a"}


# ---- splitting responses -------------------------------------------------------------------


def test_split_reads_nginx_responses_and_leaves_a_partial_one() -> None:
    buffer = NGINX_202 * 3 + NGINX_202[:50]

    statuses, closes, used = split_responses(buffer)

    assert statuses == [202, 202, 202] and not closes
    assert used == 3 * len(NGINX_202)


def test_split_handles_other_spellings_chunked_bodies_and_interim_responses() -> None:
    buffer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"
              b"HTTP/1.1 204 No Content\r\n\r\n"
              b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
              b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
              b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    statuses, closes, used = split_responses(buffer)

    assert statuses == [201, 204, 500, 400]
    assert closes and used == len(buffer)


def test_split_treats_http_1_0_as_closing_unless_kept_alive() -> None:
    assert split_responses(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[1]
    kept = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    assert not split_responses(kept)[1]


@pytest.mark.parametrize("buffer", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 2x2 Odd\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nbody until close",
])
def test_split_rejects_what_it_cannot_frame(buffer: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_responses(buffer)


# ---- the publisher against a scripted pipelining server -------------------------------------


class ScriptedNginx:
    """Answers pipelined publishes; ``answer(channel, body, attempt)`` picks each status.

    It reads requests one after another from each connection, as nginx does, records what
    it accepted per channel, and closes a connection after ``keepalive_requests``.
    """

    def __init__(self, answer: Callable[[str, bytes, int], int] = lambda *_: 202,
                 keepalive_requests: int = 1000):
        self.answer = answer
        self.keepalive_requests = keepalive_requests
        self.accepted: dict[str, list[bytes]] = defaultdict(list)
        self.attempts: dict[bytes, int] = defaultdict(int)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                channel = target.split("id=", 1)[1]

                self.attempts[body] += 1
                status = self.answer(channel, body, self.attempts[body])
                if 200 <= status < 300:
                    self.accepted[channel].append(body)
                served += 1
                closing = status == 400 or served >= self.keepalive_requests
                connection = b"close" if closing else b"keep-alive"
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: %s\r\n\r\n{}"
                             % (status, connection))
                await writer.drain()
                if closing:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def _publish(nginx: ScriptedNginx, entries: list, concurrency: int = 4, depth: int = 8):
    return _publish_batches(nginx, [entries], concurrency, depth)[0]


def _publish_batches(
    nginx: ScriptedNginx, batches: list[list], concurrency: int = 4, depth: int = 8,
    before_resend: Callable[[], Awaitable[Resend]] = _resend_now,
) -> list:
    """Each batch published in turn by one publisher; the result of each."""

    async def scenario():
        server = await asyncio.start_server(nginx.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = PipelinePool("127.0.0.1", port, concurrency, timeout=5)
        publisher = Publisher(pool, PublishRequests("127.0.0.1", port), "t", depth,
                              before_resend=before_resend)
        try:
            return [await publisher.publish_batch(plan_batch("t", entries))
                    for entries in batches]
        finally:
            await pool.close()
            server.close()

    return asyncio.run(scenario())


def _entries(count: int, channels: int) -> list:
    return [_entry(f"{n + 1}-0", [f"ch{n % channels}"], f"m{n}") for n in range(count)]


def _texts(bodies: list[bytes]) -> list[str]:
    return [json.loads(body)["text"] for body in bodies]


def test_pipelined_batch_keeps_each_channels_order() -> None:
    nginx = ScriptedNginx(keepalive_requests=37)

    result = _publish(nginx, _entries(600, 7))

    assert result.rejected == 0 and sum(result.accepted.values()) == 600
    for channel in range(7):
        assert _texts(nginx.accepted[f"ch{channel}"]) == [f"m{n}" for n in range(channel, 600, 7)]
    assert nginx.connections > 600 // 37, "connections nginx closed were replaced"


def test_a_4xx_skips_that_delivery_only() -> None:
    def answer(channel: str, body: bytes, attempt: int) -> int:
        return 400 if b'"m5"' in body else 202

    nginx = ScriptedNginx(answer)

    result = _publish(nginx, _entries(40, 4))

    assert result.rejected == 1 and result.accepted["ch1"] == 9
    assert _texts(nginx.accepted["ch1"]) == [f"m{n}" for n in range(1, 40, 4) if n != 5]
    assert _texts(nginx.accepted["ch2"]) == [f"m{n}" for n in range(2, 40, 4)]


def test_a_5xx_stops_the_channel_there_and_the_retry_resumes_in_order() -> None:
    def answer(channel: str, body: bytes, attempt: int) -> int:
        return 500 if b'"m6"' in body and attempt < 3 else 202

    nginx = ScriptedNginx(answer)

    result = _publish(nginx, _entries(40, 4))

    assert result.rejected == 0 and sum(result.accepted.values()) == 40
    assert _texts(nginx.accepted["ch2"]) == [f"m{n}" for n in range(2, 40, 4)]
    assert nginx.attempts[envelope.envelope("7-0", "ch2", "m6")] == 3
    assert nginx.attempts[envelope.envelope("11-0", "ch2", "m10")] == 1, "sent past a failure"


def test_a_resend_can_wait_or_the_batch_be_abandoned_and_the_backoff_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LATER backs off again without sending; ABANDON gives the batch up (the agent reads
    it again); the next batch goes on with the same backoff, so batches abandoned one
    after another do not hit a failing nginx any faster."""
    verdicts = [Resend.LATER, Resend.ABANDON, Resend.ABANDON]

    async def before_resend() -> Resend:
        return verdicts.pop(0)

    nginx = ScriptedNginx(lambda channel, body, attempt: 500 if b'"m6"' in body else 202)
    caplog.set_level(logging.WARNING, "push_agent.publisher")

    results = _publish_batches(nginx, [_entries(40, 4)] * 2, before_resend=before_resend)

    assert results == [None, None] and not verdicts
    assert nginx.attempts[envelope.envelope("7-0", "ch2", "m6")] == 2, "resent while LATER"
    retries = [record.getMessage() for record in caplog.records
               if record.name == "push_agent.publisher"]
    assert [message.split("attempt=")[1].split()[0] for message in retries] == ["1", "2", "3"]
