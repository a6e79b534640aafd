"""Raw ceilings measured with public tools in the same run: wrk against nginx + Nchan,
redis-benchmark against Redis."""

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_CONNECTIONS = 32
WRK_THREADS = 1
"""One wrk thread leaves the second core to the single nginx worker being measured."""

REDIS_PIPELINE = 100
XREAD_BATCH = 100

WRK_SCRIPT = """\
-- POST a fixed body to one of {channels} channels in turn, like an agent publishing.
local requests = {{}}
local next_request = 0
local body = string.rep("x", {body_bytes})

init = function(args)
  local headers = {{["Content-Type"] = "application/json", ["Accept"] = "application/json"}}
  for n = 0, {channels} - 1 do
    requests[n] = wrk.format("POST", "/pub?id={prefix}" .. n, headers, body)
  end
end

request = function()
  next_request = (next_request + 1) % {channels}
  return requests[next_request]
end
"""

WRK_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+([0-9]+)")


class ToolMissing(Exception):
    """wrk or redis-benchmark is not installed (``make bench`` installs both)."""


@dataclass(frozen=True)
class WrkResult:
    rate: float
    non_2xx: int
    command: str

    def as_dict(self) -> dict:
        return asdict(self)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        raise ToolMissing(f"{name} is not installed")
    return path


def wrk_publish(internal_url: str, seconds: float, body_bytes: int = 100,
                channels: int = 1000, prefix: str = "wrk") -> WrkResult:
    """Publishes per second nginx accepts from wrk over kept-alive connections."""
    binary = tool("wrk")
    script = WRK_SCRIPT.format(channels=channels, body_bytes=body_bytes, prefix=prefix)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        args = [binary, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s",
                "-s", handle.name, f"{internal_url}/pub"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30)
    finally:
        Path(handle.name).unlink(missing_ok=True)

    rate = WRK_RATE.search(done.stdout)
    if done.returncode != 0 or rate is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    errors = WRK_ERRORS.search(done.stdout)
    shown = " ".join(args[:-3]) + f" -s publish.lua (body {body_bytes} B, {channels} channels) "
    return WrkResult(float(rate.group(1)), int(errors.group(1)) if errors else 0,
                     shown + "http://127.0.0.1:PORT/pub")


@dataclass(frozen=True)
class RedisCeiling:
    xadd_per_second: float
    xread_entries_per_second: float
    commands: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def redis_benchmark(port: int, requests: int, content_bytes: int = 100) -> RedisCeiling:
    """Pipelined XADD rate, then XREAD entries per second in batches of XREAD_BATCH."""
    binary = tool("redis-benchmark")
    key = "bench:ceiling:stream"
    base = [binary, "-h", "127.0.0.1", "-p", str(port), "--csv"]
    xadd = base + ["-n", str(requests), "-P", str(REDIS_PIPELINE), "XADD", key, "*",
                   "c", '["ch1"]', "t", "x" * content_bytes]
    xread = base + ["-n", str(max(1000, requests // 20)), "XREAD", "COUNT", str(XREAD_BATCH),
                    "STREAMS", key, "0-0"]

    xadd_rate = _csv_rate(subprocess.run(xadd, capture_output=True, text=True, timeout=120))
    xread_rate = _csv_rate(subprocess.run(xread, capture_output=True, text=True, timeout=120))
    shown = [
        f"redis-benchmark -n {requests} -P {REDIS_PIPELINE} XADD {key} '*' c '[\"ch1\"]' t "
        f"<{content_bytes} bytes>",
        f"redis-benchmark -n {max(1000, requests // 20)} XREAD COUNT {XREAD_BATCH} STREAMS "
        f"{key} 0-0",
    ]
    return RedisCeiling(xadd_rate, xread_rate * XREAD_BATCH, shown)


def _csv_rate(done: subprocess.CompletedProcess) -> float:
    """The rps column of redis-benchmark's --csv output."""
    for line in done.stdout.splitlines():
        cells = [cell.strip('"') for cell in line.split(",")]
        if len(cells) > 1 and cells[0] != "test":
            return float(cells[1])
    raise RuntimeError(f"redis-benchmark failed: {done.stdout[-500:]} {done.stderr[-500:]}")
