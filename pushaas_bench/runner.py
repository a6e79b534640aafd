"""Every benchmark in one run, in an order that keeps them from disturbing each other.

Each section returns plain data (what goes into benchmarks.json); the report and charts
are drawn from that data alone. Sizes come from a ``Sizes``: ``FULL`` is ``make bench``,
``QUICK`` is the smoke test's.
"""

import dataclasses
import logging
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pushaas_bench import ceilings, idle, latency, publish_route
from pushaas_bench.fleet import Fleet
from pushaas_bench.procs import RedisServer
from pushaas_bench.stack import LocalStack
from pushaas_bench.throughput import Drain, Workload

log = logging.getLogger("pushaas_bench")

LAMBDA_HOSTS = 3
"""Concurrent handler processes, as Lambda runs several instances of a busy function."""


@dataclass(frozen=True)
class Sizes:
    wrk_seconds: float
    redis_requests: int
    messages: int
    """Target 1: messages of 100 bytes over 1000 channels, drained by one agent."""
    profile_messages: int
    channels_per_message: tuple[int, ...]
    size_curve: tuple[tuple[int, int], ...]
    """(content bytes, messages) points."""
    instances: tuple[int, ...]
    instance_messages: int
    """Messages in all the instances' streams together."""
    latency_rate: float
    latency_seconds: float
    latency_subscribers: tuple[int, ...]
    latency_channels: int
    fanout_subscribers: int
    fanout_messages: int
    fanout_gap: float
    idle_subscribers: int
    idle_step: int
    route_requests: int
    package: bool


FULL = Sizes(
    wrk_seconds=5, redis_requests=300_000, messages=200_000, profile_messages=100_000,
    channels_per_message=(1, 10, 100),
    size_curve=((100, 200_000), (4096, 50_000), (32768, 10_000)),
    instances=(1, 10, 100), instance_messages=100_000,
    latency_rate=1000, latency_seconds=10, latency_subscribers=(100, 1000, 5000),
    latency_channels=100, fanout_subscribers=5000, fanout_messages=10, fanout_gap=0.5,
    idle_subscribers=15_000, idle_step=1000, route_requests=5000, package=True,
)

QUICK = Sizes(
    wrk_seconds=1, redis_requests=10_000, messages=2000, profile_messages=0,
    channels_per_message=(1, 10), size_curve=((100, 1000), (4096, 500)),
    instances=(1, 2), instance_messages=1000,
    latency_rate=200, latency_seconds=1, latency_subscribers=(20,), latency_channels=10,
    fanout_subscribers=50, fanout_messages=3, fanout_gap=0.2,
    idle_subscribers=200, idle_step=100, route_requests=200, package=False,
)

SECTIONS = ("ceilings", "throughput", "curves", "latency", "idle", "route")

NGINX_100B = {"shm_size": "512M"}
NGINX_LARGE = {"shm_size": "1024M", "buffer_length": "10"}
"""Large messages: a short replay buffer keeps 1000 channels within shared memory."""


def run(sizes: Sizes, run_dir: Path, sections: tuple[str, ...] = SECTIONS,
        progress: Callable[[str], None] = print) -> dict:
    """Run the chosen sections; returns the whole result as plain data."""
    _raise_file_limit()
    result: dict = {"machine": machine(), "sizes": dataclasses.asdict(sizes),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    started = time.monotonic()
    busy_before = _machine_busy()
    redis_server = RedisServer(run_dir / "redis").start()
    try:
        if "ceilings" in sections or "throughput" in sections:
            progress("throughput: wrk ceiling, then one agent draining the stream")
            result["throughput"] = _throughput(sizes, run_dir, redis_server)
            progress("ceilings: redis-benchmark")
            result["redis"] = ceilings.redis_benchmark(
                redis_server.port, sizes.redis_requests).as_dict()
        if "curves" in sections:
            result["curves"] = _curves(sizes, run_dir, redis_server, progress)
        if "route" in sections:
            progress("publish route: CPU per request, import time, package size")
            result["route"] = publish_route.measure(
                run_dir / "route", redis_server, sizes.route_requests,
                publish_route.plans_file(run_dir), profile=sizes.profile_messages > 0,
                package=sizes.package).as_dict()
    finally:
        redis_server.stop()

    if "latency" in sections:
        result["latency"] = _end_to_end(sizes, run_dir, progress)
    if "idle" in sections:
        progress(f"idle: {sizes.idle_subscribers} subscribers on one nginx")
        result["idle"] = idle.idle_subscribers(
            run_dir / "idle", sizes.idle_subscribers, sizes.idle_step).as_dict()

    result["seconds"] = time.monotonic() - started
    result["machine"]["busy_during_run"] = _busy_share(busy_before, _machine_busy())
    return result


def _throughput(sizes: Sizes, run_dir: Path, redis_server: RedisServer) -> dict:
    """Target 1: the wrk ceiling and one agent's drain, on the same fresh nginx."""
    drain = Drain(run_dir / "target1", redis_server, Workload(sizes.messages),
                  nginx_settings=NGINX_100B, label="target")
    try:
        replica = drain.start_nginx()[0]
        wrk = ceilings.wrk_publish(replica.internal_url, sizes.wrk_seconds)
        result = drain.run(timeout=_timeout(sizes.messages))
    finally:
        drain.stop()

    data = {"wrk": wrk.as_dict(), "agent": result.as_dict(),
            "ratio": result.messages_per_second / wrk.rate}
    if sizes.profile_messages:
        profiled = Drain(run_dir / "profiled", redis_server, Workload(sizes.profile_messages),
                         nginx_settings=NGINX_100B, label="profiled")
        try:
            sampled = profiled.run(_timeout(sizes.profile_messages),
                                   profile=run_dir / "agent-profile.txt")
        finally:
            profiled.stop()
        data["profile"] = sampled.as_dict()
    return data


def _curves(sizes: Sizes, run_dir: Path, redis_server: RedisServer,
            progress: Callable[[str], None]) -> dict:
    curves: dict[str, list] = {"channels": [], "sizes": [], "instances": []}
    deliveries = sizes.messages
    for per_message in sizes.channels_per_message:
        progress(f"curve: {per_message} channels per message")
        workload = Workload(max(1, deliveries // per_message), channels_per_message=per_message)
        curves["channels"].append(_drain(run_dir / f"cpm{per_message}", redis_server,
                                         workload, NGINX_100B))

    for size, messages in sizes.size_curve:
        progress(f"curve: {size}-byte messages")
        settings = NGINX_100B if size <= 1024 else NGINX_LARGE
        workload = Workload(messages, content_bytes=size)
        curves["sizes"].append(_drain(run_dir / f"size{size}", redis_server, workload, settings,
                                      wrk_body=size, wrk_seconds=min(3.0, sizes.wrk_seconds)))

    for count in sizes.instances:
        progress(f"curve: {count} instances sharing one Redis")
        workload = Workload(max(1, sizes.instance_messages // count))
        curves["instances"].append(_drain(run_dir / f"inst{count}", redis_server, workload,
                                          {"shm_size": "64M"}, instances=count))
    return curves


def _drain(run_dir: Path, redis_server: RedisServer, workload: Workload,
           nginx_settings: dict[str, str], instances: int = 1, wrk_body: int | None = None,
           wrk_seconds: float = 3.0) -> dict:
    drain = Drain(run_dir, redis_server, workload, instances, nginx_settings,
                  label=run_dir.name)
    try:
        replicas = drain.start_nginx()
        wrk = (ceilings.wrk_publish(replicas[0].internal_url, wrk_seconds, wrk_body)
               if wrk_body is not None else None)
        total = workload.messages * instances
        data = drain.run(timeout=_timeout(total * workload.channels_per_message)).as_dict()
    finally:
        drain.stop()
    if wrk is not None:
        data["wrk"] = wrk.as_dict()
        data["ratio"] = data["messages_per_second"] / wrk.rate
    return data


def _end_to_end(sizes: Sizes, run_dir: Path, progress: Callable[[str], None]) -> dict:
    """Targets 2 and 3 on the local stack: latency points, then fan-out."""
    progress("end to end: starting the local stack and one instance")
    stack = LocalStack(run_dir / "stack").start()
    hosts = []
    try:
        publisher = stack.create_instance()
        hosts = [stack.start_lambda_host(n) for n in range(LAMBDA_HOSTS)]
        api_urls = [host.url for host in hosts]
        pids = {**stack.pids(), "lambda_hosts": [pid for h in hosts for pid in h.pids]}
        pids.pop("api", None)
        public_port = int(publisher.public_url.rsplit(":", 1)[1])

        def wait(count: int) -> None:
            idle.wait_subscribed(publisher.internal_url, count)

        points = []
        for count in sizes.latency_subscribers:
            progress(f"end to end: {count} subscribers at {sizes.latency_rate:.0f} msg/s")
            fleet = Fleet(public_port)
            try:
                point = latency.latency_point(
                    publisher, api_urls, fleet, pids, count, sizes.latency_channels,
                    sizes.latency_rate, sizes.latency_seconds, wait)
            finally:
                fleet.close()
            points.append(point.as_dict())
            idle.wait_subscribed(publisher.internal_url, 0)

        progress(f"fan-out: {sizes.fanout_subscribers} subscribers on one channel")
        fleet = Fleet(public_port)
        try:
            fan = latency.fanout(publisher, api_urls, fleet, pids, sizes.fanout_subscribers,
                                 sizes.fanout_messages, sizes.fanout_gap, wait)
        finally:
            fleet.close()
        return {"points": points, "fanout": fan.as_dict(), "lambda_hosts": LAMBDA_HOSTS}
    finally:
        for host in hosts:
            host.stop()
        stack.stop()


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 1024 ** 2, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "nginx": _version(["nginx", "-v"]), "redis": _version(["redis-server", "--version"]),
        "wrk": _version(["wrk", "--version"]), "load_average": os.getloadavg(),
    }


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else ""


def _machine_busy() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle_ticks = fields[3] + fields[4]
    return sum(fields) - idle_ticks, sum(fields)


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def _timeout(deliveries: int) -> float:
    """Generous: a drain slower than 2,000 deliveries/s is a failure, not a result."""
    return 60.0 + deliveries / 2000


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
