"""The publish route's own cost: CPU per request in-process with real Redis, the time
``import app`` takes (the cold start's share that is ours), and the Lambda zip's size.

The route runs in a child process, ``python -m pushaas_bench.publish_route REQUESTS``,
with the app's settings in its environment: its import is then a real first import and
py-spy can sample it from outside. It calls the app's Lambda handler with a prepared API
Gateway event, as the Lambda runtime does, and prints one JSON line.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pushaas_bench.procs import REPO_ROOT, RedisServer
from pushaas_bench.profiling import ProfileSummary, Sampler

INSTANCE = "routebench"
WARMUP = 200
IMPORT_RUNS = 5


@dataclass(frozen=True)
class RouteResult:
    requests: int
    cpu_ms_per_request: float
    wall_ms_per_request: float
    import_ms: list[float]
    zip_bytes: int | None
    profile: ProfileSummary | None

    @property
    def import_ms_median(self) -> float:
        return statistics.median(self.import_ms)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["import_ms_median"] = self.import_ms_median
        return data


def app_environment(redis_url: str, plans_file: Path) -> dict[str, str]:
    """The app's settings as the prod stage has them, on a local Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")}
    env.update(
        PUSHAAS_REDIS_URL=redis_url, PUSHAAS_MASTER_KEY="b" * 48,
        PUSHAAS_BROKER_PASSWORD="bench-broker-password", PUSHAAS_ENDPOINT="http://127.0.0.1",
        PUSHAAS_PROVISIONER="local", PUSHAAS_JOB_QUEUE="redis", PUSHAAS_LOG_LEVEL="WARNING",
        PUSHAAS_PLANS_FILE=str(plans_file), PYTHONPATH=str(REPO_ROOT),
    )
    return env


def measure(run_dir: Path, redis_server: RedisServer, requests: int, plans_file: Path,
            profile: bool = True, package: bool = True) -> RouteResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = app_environment(redis_server.url, plans_file)
    imports = [import_ms(env) for _ in range(IMPORT_RUNS)]

    proc = subprocess.Popen(
        [sys.executable, "-m", "pushaas_bench.publish_route", str(requests)], cwd=REPO_ROOT,
        env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    ready = proc.stdout.readline()
    if not ready.startswith("ready"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"publish route bench did not start: {ready!r}")
    sampler = Sampler(proc.pid, run_dir / "route-profile.txt").start() if profile else None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    summary = sampler.stop() if sampler else None
    proc.wait(60)
    figures = json.loads(line)

    return RouteResult(requests, figures["cpu_ms"], figures["wall_ms"], imports,
                       zip_size(run_dir) if package else None, summary)


def import_ms(env: dict[str, str]) -> float:
    """Milliseconds ``import app`` takes in a fresh interpreter (bytecode already cached)."""
    code = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return float(done.stdout.strip().splitlines()[-1]) * 1000


def zip_size(run_dir: Path) -> int | None:
    """Size of the Lambda zip ``scripts/package.sh`` builds for the prod stage."""
    out = run_dir / "package"
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "package.sh"), "prod", str(out)], cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=600,
    )
    archive = out / "deployment.zip"
    return archive.stat().st_size if done.returncode == 0 and archive.exists() else None


# ---- the child: the route in a loop ----------------------------------------------------


def _publisher_headers() -> dict[str, str]:
    """Create the instance through the app's own code and return a publisher's headers."""
    import base64

    from chalicelib import services
    from chalicelib.credentials import publisher_secret
    from chalicelib.instances import Instance

    svc = services.current()
    svc.redis.delete(*svc.redis.keys(f"*{{{INSTANCE}}}*") or ["-"])
    svc.store.create(Instance(name=INSTANCE, plan="bench", team="bench", user="bench"))
    record = svc.store.get(INSTANCE)
    secret = publisher_secret(svc.settings.master_key.reveal(), INSTANCE, record.salt)
    token = base64.b64encode(f"{INSTANCE}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _child(requests: int) -> int:
    """Call the handler with one prepared event: what Lambda runs per request, no more."""
    from chalice.local import LambdaContext, LambdaEventConverter, RouteMatcher

    import app

    headers = _publisher_headers()
    body = json.dumps({"channels": ["news"], "content": "x" * 100}).encode()
    converter = LambdaEventConverter(RouteMatcher(list(app.app.routes)))
    event = converter.create_lambda_event("POST", "/api/v1/messages", headers, body)
    context = LambdaContext("api_handler", 512, max_runtime_ms=29_000)
    for _ in range(WARMUP):
        response = app.app(dict(event), context)
        if response["statusCode"] != 201:
            raise RuntimeError(f"publish answered {response['statusCode']}: {response}")

    print("ready", flush=True)
    sys.stdin.readline()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        app.app(dict(event), context)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu_ms": cpu * 1000 / requests, "wall_ms": wall * 1000 / requests}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))


def plans_file(run_dir: Path) -> Path:
    """The default plans plus ``bench`` (no practical rate limit), as a file."""
    from pushaas_bench.stack import BENCH_PLAN

    path = Path(tempfile.mkdtemp(dir=run_dir)) / "plans.json"
    default = json.loads((REPO_ROOT / "chalicelib" / "plans.json").read_text())
    path.write_text(json.dumps({**default, "bench": BENCH_PLAN}))
    return path
