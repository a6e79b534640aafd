"""nginx memory under busy EventSource subscribers, with and without Nchan's pings.

    python -m pushaas_bench.ping_memory [--seconds 90] [--subscribers 300] [--rate 200]

Why this exists: soaks with long-lived EventSource subscribers saw nginx grow steadily
until the subscribers left. Each variant here starts a fresh replica with the same
rendered config except ``PUSH_STREAM_EVENTSOURCE_PING``, holds the subscribers on 20
channels (the benchmarks' subscriber fleet), publishes at a fixed rate straight into the
replica's internal ``/pub`` (no agent, no Redis: only nginx is measured) and samples the
anonymous memory of nginx's processes every 10 s. It prints one markdown table;
docs/reliability.md quotes a run.
"""

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pushaas_bench.fleet import Fleet
from pushaas_bench.procs import NginxReplica

CHANNELS = 20
SAMPLE_EVERY = 10.0
WARM_UP = 10.0
FILLER = b"x" * 60


@dataclass
class Variant:
    ping_seconds: int
    samples: list[tuple[float, float]]
    delivered: int

    @property
    def label(self) -> str:
        return f"every {self.ping_seconds} s" if self.ping_seconds else "none"


def anon_mib(pids: list[int]) -> float:
    """RssAnon of the processes: what the connections hold, not the shared zone or code."""
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


def _body(seq: int) -> bytes:
    """An envelope-sized body carrying the marker the fleet's subscribers count."""
    return (b'{"id":"1-0","channel":"c","text":"seq=%d;%s","time":"2026-01-01T00:00:00Z"}'
            % (seq, FILLER))


async def _publish(replica: NginxReplica, seconds: float,
                   rate: int) -> list[tuple[float, float]]:
    """Publish at ``rate`` for ``seconds``, sampling nginx's memory as it goes."""
    internal = urlsplit(replica.internal_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", internal)
    drain = asyncio.create_task(_drain(reader))
    tick, per_tick = 0.1, max(1, round(rate * 0.1))
    samples = [(0.0, anon_mib(replica.pids))]
    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        for _ in range(per_tick):
            body = _body(sent)
            writer.write(f"POST /pub?id=c{sent % CHANNELS} HTTP/1.1\r\nHost: bench\r\n"
                         "Content-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            sent += 1
        await writer.drain()
        if elapsed - samples[-1][0] >= SAMPLE_EVERY:
            samples.append((elapsed, anon_mib(replica.pids)))
        await asyncio.sleep(tick)
    samples.append((time.monotonic() - start, anon_mib(replica.pids)))

    writer.close()
    drain.cancel()
    await asyncio.gather(drain, return_exceptions=True)
    return samples


def run_variant(run_dir: Path, ping_seconds: int, seconds: float, subscribers: int,
                rate: int) -> Variant:
    replica = NginxReplica(run_dir, eventsource_ping=str(ping_seconds),
                           max_connections=str(subscribers + 512)).start()
    try:
        fleet = Fleet(urlsplit(replica.public_url).port or 0)
        try:
            fleet.connect([f"/ev/c{n % CHANNELS}" for n in range(subscribers)])
            samples = asyncio.run(_publish(replica, seconds, rate))
        finally:
            delivered = fleet.stop().events
    finally:
        replica.stop()
    return Variant(ping_seconds, samples, delivered)


def table(variants: list[Variant], subscribers: int, rate: int) -> str:
    lines = [
        f"{subscribers} EventSource subscribers on {CHANNELS} channels, {rate} messages/s "
        "published into one replica:",
        "",
        "| EventSource ping | nginx anonymous memory, 10 s → end | growth | deliveries |",
        "| --- | --- | --- | --- |",
    ]
    for variant in variants:
        # From the first sample after warm-up: the first messages fill pools once.
        begin, first = next(sample for sample in variant.samples if sample[0] >= WARM_UP)
        end, last = variant.samples[-1]
        minutes = max(end - begin, 1.0) / 60
        lines.append(f"| {variant.label} | {first:.1f} → {last:.1f} MiB at {end:.0f} s | "
                     f"{(last - first) / minutes:+.2f} MiB/min | {variant.delivered:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--pings", default="0,30,10", help="ping intervals to compare, s")
    args = parser.parse_args()

    variants = []
    with tempfile.TemporaryDirectory(prefix="ping-memory-") as tmp:
        for ping in (int(value) for value in args.pings.split(",")):
            variants.append(run_variant(Path(tmp) / f"ping-{ping}", ping, args.seconds,
                                        args.subscribers, args.rate))
    print(table(variants, args.subscribers, args.rate))


if __name__ == "__main__":
    main()
