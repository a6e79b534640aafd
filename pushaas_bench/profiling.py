"""Sampling profiles of a running process with py-spy, summarised as tables.

py-spy attaches from outside (ptrace), so the agent runs unmodified while it is sampled;
its "raw" output is one line per distinct stack with a sample count, which is all the
summary needs.
"""

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

SAMPLE_RATE = 1000
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    own: list[tuple[str, float]]
    """Functions by share of samples spent in their own code (not their callees)."""
    inclusive: list[tuple[str, float]]
    """Functions by share of samples with them anywhere on the stack."""

    def as_dict(self) -> dict:
        return asdict(self)


def py_spy() -> str | None:
    """The py-spy binary of this environment, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Sampler:
    """``py-spy record`` attached to one pid until ``stop``."""

    def __init__(self, pid: int, output: Path):
        self.pid = pid
        self.output = output
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Sampler":
        binary = py_spy()
        if binary is None:
            return self
        # --gil: only samples holding the GIL, so waiting on a socket or in epoll is not
        # counted and the shares are shares of CPU time.
        args = [binary, "record", "--pid", str(self.pid), "--rate", str(SAMPLE_RATE),
                "--format", "raw", "--output", str(self.output), "--nonblocking", "--gil"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> ProfileSummary | None:
        """Stop sampling (py-spy writes its file on SIGINT) and summarise."""
        if self.proc is None:
            return None

        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not self.output.exists():
            return None
        return summarise(self.output.read_text(errors="replace"))


def summarise(raw: str, top: int = 12) -> ProfileSummary:
    """Own and inclusive shares per function from py-spy's raw (collapsed) stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue

        samples = int(count)
        frames = [_function(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(top)]

    # Frames on (nearly) every stack, such as the interpreter's entry points and the event
    # loop's run methods, say nothing about where the time goes.
    ours = Counter({name: count for name, count in inclusive.items()
                    if count < 0.9 * total and _is_project(name)})
    return ProfileSummary(total, shares(own) if total else [], shares(ours) if total else [])


def _is_project(name: str) -> bool:
    return any(f"({anchor}" in name for anchor in ("push_agent", "chalicelib", "app.py"))


def _function(frame: str) -> str:
    """``name (path/to/module.py:123)`` -> ``name (module.py)``: lines would split a function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short(path)})" if path else name


def _short(path: str) -> str:
    parts = Path(path).parts
    for anchor in ("push_agent", "redis", "asyncio", "uvloop", "chalicelib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor):])
    return Path(path).name
