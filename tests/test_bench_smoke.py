"""``make bench`` at tiny sizes, so the benchmark code cannot rot between real runs.

Nothing here judges performance: the figures of a few hundred messages mean nothing. What
is checked is that every section runs against real processes, fills in its figures and
that the report and charts are written from them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)


def _bench(out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pushaas_bench", "--quick", "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=55,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "benchmarks.json").read_text())


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench "
                    "installs it)")
def test_throughput_curves_and_route_sections(tmp_path: Path) -> None:
    data = _bench(tmp_path, "--sections", "throughput,curves,route")

    throughput = data["throughput"]
    assert throughput["wrk"]["rate"] > 0 and throughput["agent"]["messages_per_second"] > 0
    assert data["redis"]["xadd_per_second"] > 0
    assert [p["workload"]["channels_per_message"] for p in data["curves"]["channels"]] == [1, 10]
    assert all(p["ratio"] > 0 for p in data["curves"]["sizes"])
    assert [p["instances"] for p in data["curves"]["instances"]] == [1, 2]
    assert 0 < data["route"]["cpu_ms_per_request"] < 50
    assert data["route"]["import_ms_median"] > 0

    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets (issue 5)" in report and "1. Agent throughput vs wrk" in report
    for chart in ("throughput", "channels", "sizes", "instances"):
        assert (tmp_path / f"bench-{chart}.png").read_bytes().startswith(b"\x89PNG")

    rendered = subprocess.run([sys.executable, "-m", "pushaas_bench", "--render", "--out",
                               str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                              timeout=30)
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / "benchmarks.md").read_text() == report


def test_end_to_end_and_idle_sections(tmp_path: Path) -> None:
    data = _bench(tmp_path, "--sections", "latency,idle")

    point = data["latency"]["points"][0]
    for path in ("direct", "full"):
        assert point[path]["complete"] == point[path]["sent"] > 0, point[path]
        assert point[path]["failed_publishes"] == 0
        assert 0 < point[path]["first"]["p50"] <= point[path]["last"]["p99"]
    fan = data["latency"]["fanout"]
    assert fan["direct_last_ms"]["count"] == fan["full_last_ms"]["count"] == 3
    assert data["idle"]["held"] == data["idle"]["wanted"] == 200
    assert len(data["idle"]["steps"]) == 3

    report = (tmp_path / "benchmarks.md").read_text()
    assert "2. Extra latency" in report and "5. Idle subscribers" in report
    assert (tmp_path / "bench-latency.png").exists()


def test_ping_memory_compares_the_variants() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pushaas_bench.ping_memory", "--seconds", "11",
         "--subscribers", "10", "--rate", "50", "--pings", "0,5"],
        cwd=REPO, capture_output=True, text=True, timeout=55,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0] for row in rows] == ["| none", "| every 5 s"]
    assert all(int(row.split(" | ")[-1].rstrip(" |").replace(",", "")) > 0 for row in rows)
