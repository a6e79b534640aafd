"""A supervised child process: what ECS does for one container, done for a local process.

Each child runs in its own session (process group), so stopping it also stops what it
forked (nginx workers) and a Ctrl-C in the terminal reaches only the launcher, which
then stops children in order. A child that dies is restarted with a growing delay, so a
process that crashes at start cannot spin the machine. Every start writes a pid file
holding the pid and the kernel's start time of the process, so a later launcher can
stop leftovers of a launcher that was killed without mistaking a reused pid for them.
"""

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0
TAIL_BYTES = 8192


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start one child; ``replica`` is None for an instance-wide process."""

    instance: str
    role: str
    replica: int | None
    args: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".process")

    @property
    def label(self) -> str:
        replica = "-" if self.replica is None else str(self.replica)
        return f"instance={self.instance} replica={replica} role={self.role}"


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential restart delay, reset once a process has stayed up long enough.

    The first delay is a full second because Nchan's event ids are ``<unix second>:<n>``
    with ``n`` restarting at 0 in a new nginx: an nginx restarted within the second its
    predecessor died in would reuse ids of that second, and a subscriber resuming with
    the dead one's ``T:5`` would silently skip the new ``T:0`` to ``T:5``.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.first_delay * 2 ** max(failures - 1, 0), self.max_delay)


@dataclass
class _Restart:
    failures: int = 0
    due: float | None = None
    exit_code: int | None = None


class SupervisedProcess:
    """One child process with start, stop, liveness and restart-with-backoff."""

    def __init__(self, spec: ProcessSpec, policy: RestartPolicy | None = None):
        self.spec = spec
        self.policy = policy or RestartPolicy()
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._stopped = False
        self._restart = _Restart()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> None:
        """Start the child; OSError if the executable cannot be run."""
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                self.spec.args,
                env=self.spec.env,
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        self._started_at = time.monotonic()
        self._stopped = False
        self._restart.due = None
        _write_pid_file(self.spec.pid_path, self._proc.pid)
        log.debug("process started %s pid=%d", self.spec.label, self._proc.pid)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send a signal to the child itself (e.g. SIGHUP for an nginx reload)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the group; always reaped."""
        self._stopped = True
        proc = self._proc
        if proc is None:
            return None

        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process ignored SIGTERM, killing %s pid=%d", self.spec.label, proc.pid)
                _kill_group(proc.pid)
                proc.wait(timeout)

        _kill_group(proc.pid)
        self.spec.pid_path.unlink(missing_ok=True)
        return proc.returncode

    def supervise(self, now: float | None = None) -> bool:
        """Restart the child if it died and its restart is due; True when restarted.

        Called periodically by a supervisor. The first call after a death schedules the
        restart (and stops leftovers of the dead process group, such as nginx workers
        still holding the listening socket); a later call performs it.
        """
        if self._proc is None or self._stopped or self._proc.poll() is None:
            return False
        now = time.monotonic() if now is None else now

        if self._restart.due is None:
            self._schedule_restart(now)
        if now < self._restart.due:
            return False

        try:
            self.start()
        except OSError as exc:
            log.error("process restart failed %s error=%s", self.spec.label, exc)
            self._schedule_restart(now)
            return False

        self.restarts += 1
        log.warning("process restarted %s exit_code=%s restarts=%d pid=%d",
                    self.spec.label, self._restart.exit_code, self.restarts, self._proc.pid)
        return True

    def tail(self, lines: int = 5) -> str:
        """The last lines of the child's output, joined for an error message."""
        try:
            with open(self.spec.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(log_file.tell() - TAIL_BYTES, 0))
                text = log_file.read().decode("utf-8", "replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    def _schedule_restart(self, now: float) -> None:
        assert self._proc is not None
        _kill_group(self._proc.pid)

        if now - self._started_at >= self.policy.stable_after:
            self._restart.failures = 0
        self._restart.failures += 1
        self._restart.exit_code = self._proc.returncode
        delay = self.policy.delay(self._restart.failures)
        self._restart.due = now + delay
        log.warning("process died %s exit_code=%s ran_for=%.1fs restart_in=%.1fs",
                    self.spec.label, self._proc.returncode, now - self._started_at, delay)


def reap_leftovers(root: Path, timeout: float = STOP_TIMEOUT) -> list[int]:
    """Stop processes recorded by pid files under ``root`` that still run; their pids.

    A pid file counts only if the process with that pid has the recorded start time, so
    a pid reused by an unrelated process is never signalled.
    """
    leftovers: dict[int, Path] = {}
    for pid_file in root.rglob("*.process") if root.is_dir() else []:
        pid = _recorded_pid(pid_file)
        if pid is None:
            pid_file.unlink(missing_ok=True)
            continue
        leftovers[pid] = pid_file
        log.warning("stopping leftover process pid=%d file=%s", pid, pid_file)
        _signal_group(pid, signal.SIGTERM)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(_exists, leftovers)):
        time.sleep(0.05)

    for pid, pid_file in leftovers.items():
        _signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    return list(leftovers)


def children(pid: int) -> dict[int, str]:
    """Live children of ``pid`` with their command lines (nginx shows its state there)."""
    found: dict[int, str] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmdline = (stat_file.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        found[int(stat_file.parent.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def _write_pid_file(path: Path, pid: int) -> None:
    started = _start_time(pid)
    if started is not None:
        path.write_text(f"{pid} {started}\n")


def _recorded_pid(pid_file: Path) -> int | None:
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _exists(pid: int) -> bool:
    return _start_time(pid) is not None and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
