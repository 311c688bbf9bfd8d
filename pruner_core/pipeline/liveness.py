"""Whether the process that started a run is still alive: a run still marked running whose process died is
listed as interrupted (processes are read from /proc where there is one; another host's runs are not judged)."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

CLOCK_SLACK_S = 2.0  # /proc start times are whole seconds + clock ticks


def why_gone(status: dict) -> str | None:
    """Why a run marked running cannot still be running, or None if its process may well be alive."""
    pid, host = status.get("pid"), status.get("host")
    if host and host != socket.gethostname():
        return None  # another machine's process: we cannot tell
    if not isinstance(pid, int) or pid <= 0:
        return "its status has no process id"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"the process that ran it (pid {pid}) has ended"
    except PermissionError:
        pass  # alive, owned by another user
    except OSError as e:
        return f"its process (pid {pid}) cannot be checked ({e.strerror})"
    started = epoch_seconds(status.get("started"))
    proc_started = process_start(pid)
    if started is not None and proc_started is not None and proc_started > started + CLOCK_SLACK_S:
        return f"the process that ran it is gone (pid {pid} now belongs to a process started after the run)"
    return None


def epoch_seconds(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


def process_start(pid: int) -> float | None:
    """Start time (epoch seconds) of process ``pid`` from /proc, or None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may contain spaces
        return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
