"""Run a command and say what its processes' memory was made of: peak anonymous vs file-backed resident pages.

``/usr/bin/time -v``'s "Maximum resident set size" (the kernel's VmHWM) counts every resident page, the
file-backed pages of memory-mapped files included: the datasets library memory-maps its Arrow cache files,
and pages touched while reading them stay in RSS until the kernel needs them back, as page cache it can
drop, not memory the process holds. This samples ``/proc/PID/status`` of the command and all its
descendants every ``--interval`` seconds and reports, per process, the peak of RssAnon (heap, Arrow's
pool, Python objects: memory that has to be there) separately from RssFile (mapped files) and RssShmem,
with the kernel's own VmHWM; and the peak of the sum over processes at one sample.

    python bench/proc_memory.py [--interval 0.5] [--json OUT.json] -- COMMAND [ARGS...]

Linux only (reads /proc). The command's exit status is this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def read_status(pid: int) -> dict[str, int] | None:
    """The ``FIELDS`` of ``/proc/PID/status`` in KiB, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return kids


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += children(pid)
    return seen


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def sample(cmd: list[str], interval: float) -> dict[str, object]:
    """Run ``cmd`` to the end, sampling its process tree; the peaks per process and of the sums."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd)
    peaks: dict[int, dict[str, object]] = {}
    total_peak = {"anon_kib": 0, "file_kib": 0, "rss_kib": 0}
    while True:
        done = proc.poll() is not None
        sums = {"anon_kib": 0, "file_kib": 0, "rss_kib": 0}
        for pid in [] if done else tree(proc.pid):
            status = read_status(pid)
            if not status:
                continue
            p = peaks.setdefault(pid, {"pid": pid, "ppid_root": pid == proc.pid, "cmd": cmdline(pid)[:160],
                                       **{f: 0 for f in FIELDS}, "anon_at_rss_peak": 0, "file_at_rss_peak": 0})
            if not p["cmd"]:  # sampled between fork and exec
                p["cmd"] = cmdline(pid)[:160]
            for f in FIELDS:
                p[f] = max(int(p[f]), status.get(f, 0))
            if status.get("VmRSS", 0) >= int(p["VmRSS"]):
                p["anon_at_rss_peak"], p["file_at_rss_peak"] = status.get("RssAnon", 0), status.get("RssFile", 0)
            sums["anon_kib"] += status.get("RssAnon", 0)
            sums["file_kib"] += status.get("RssFile", 0)
            sums["rss_kib"] += status.get("VmRSS", 0)
        for k in total_peak:
            total_peak[k] = max(total_peak[k], sums[k])
        if done:
            break
        time.sleep(interval)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "max_rss_kib_rusage": after.ru_maxrss, "interval_s": interval,
            "processes": sorted(peaks.values(), key=lambda p: -int(p["VmHWM"])), "sum_peaks": total_peak}


def mib(kib: object) -> str:
    return f"{int(kib) / 1024:,.0f}"  # type: ignore[call-overload]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--top", type=int, default=8, help="processes to list (largest VmHWM first)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("give a command after --")
    r = sample(cmd, a.interval)
    print(f"\nwall {r['wall_s']} s, CPU {r['cpu_s']} s (command and its children), exit {r['returncode']}; "
          f"max RSS (rusage, largest process) {mib(r['max_rss_kib_rusage'])} MiB", file=sys.stderr)
    print("| pid | peak RssAnon MiB | peak RssFile MiB | peak RssShmem MiB | peak VmRSS MiB (anon+file there) "
          "| VmHWM MiB | command |", file=sys.stderr)
    print("|---:|---:|---:|---:|---:|---:|---|", file=sys.stderr)
    for p in r["processes"][:a.top]:  # type: ignore[index]
        print(f"| {p['pid']} | {mib(p['RssAnon'])} | {mib(p['RssFile'])} | {mib(p['RssShmem'])} | "
              f"{mib(p['VmRSS'])} ({mib(p['anon_at_rss_peak'])}+{mib(p['file_at_rss_peak'])}) | {mib(p['VmHWM'])} | "
              f"`{p['cmd'][:70]}` |", file=sys.stderr)
    s = r["sum_peaks"]
    print(f"all processes at one sample, peak: RssAnon {mib(s['anon_kib'])} MiB, RssFile {mib(s['file_kib'])} MiB, "
          f"VmRSS {mib(s['rss_kib'])} MiB", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    sys.exit(r["returncode"])


if __name__ == "__main__":
    main()
