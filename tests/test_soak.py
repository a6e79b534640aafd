"""A few seconds of ``scripts/soak.py`` so the soak (``make soak``) cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import REPO

pytestmark = pytest.mark.timeout(90)


def test_soak_smoke_run_writes_its_figures_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\n<!-- soak:start -->\nold\n<!-- soak:end -->\n\ntail\n")

    run = subprocess.run(
        [sys.executable, "scripts/soak.py", "--seconds", "5", "--subscribers", "10",
         "--output", str(output), "--doc", str(doc)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(output.read_text())
    result = report["result"]
    assert result["published"] > 0 and result["expected_deliveries"] > 0
    assert result["lost"] == 0 and result["id_mismatches"] == 0
    assert result["delivered"] == result["expected_deliveries"]
    assert len(report["samples"]) >= 3
    last = report["samples"][-1]
    assert last["stream_length"] > 0 and last["redis_used_memory"] > 0
    assert last["agent_rss"] and last["nginx_rss"] and last["agent_lag"] is not None

    text = doc.read_text()
    assert "old" not in text and text.endswith("<!-- soak:end -->\n\ntail\n")
    assert f"**lost {result['lost']}**" in text and "| t (s) |" in text
