"""CPU seconds spent by each PostgreSQL server of ours, and by this process with its children.

A server's CPU is its postmaster's own, plus what its exited backends spent (the postmaster reaps
them, so the kernel adds their time to its `cutime`/`cstime`), plus what its live children have
spent so far. The difference of two snapshots is then the work the server did in between, however
many backends came and went; with every node of a local cluster on one machine, that is how the
nightly run's time splits between the coordinator, the workers and the client (dbt and the jobs).
Linux only (reads /proc).
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) of a process, in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name is in parentheses and may hold spaces: the fields start after the last ')'
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return utime + stime, cutime + cstime


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(c) for c in children)
    return found


def server_seconds(pgdata: Path) -> float:
    """CPU seconds the server of this data folder has spent since it started."""
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    own, reaped = _stat_ticks(pid)
    total = own + reaped
    for child in _children(pid):
        try:
            child_own, child_reaped = _stat_ticks(child)
        except FileNotFoundError:  # exited since the listing: counted in `reaped` from now on
            continue
        total += child_own + child_reaped
    return total / TICKS


def client_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def snapshot(servers: dict[str, Path]) -> dict[str, float]:
    """CPU seconds so far of each named server and of the client."""
    figures = {name: server_seconds(pgdata) for name, pgdata in servers.items()}
    figures["client"] = client_seconds()
    return figures


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per server and client, rounded to 0.1 s."""
    return {name: round(after[name] - before[name], 1) for name in after}
