"""Full-build benchmark (issue 5): ``mixer build recipes/v2.yaml`` over synthetic raw sources at several scales.

    python bench/build.py --scale 0.1 0.3 1.0            # exact dedup + token counts (recipes/v2.yaml)
    python bench/build.py --scale 1.0 --near             # the same recipe with dedup.near: {} added
    python bench/build.py --scale 0.1 --profile          # plus a cProfile of the build, top 25 entries
    python bench/build.py --scale 0.1 1.0 --engine ray   # the same builds on a Ray instance started here

For each scale it generates the raw files once with ``bench/gen_raw.py`` (cached in
``--cache-dir``/raw-<scale>-<seed>, reused while its MANIFEST.json matches), runs the build as a
subprocess exactly as a user would (``mixer build <recipe> --raw-dir <gen> --out <tmp> --quiet``) and
reports:

* per stage, from the build's own ``timings.json``: wall and CPU seconds (CPU of the main process,
  ``time.process_time``, and of the worker processes the stage ran, ``cpu_workers_s``), records in
  and out (derived from ``card.json``'s per-source counts and drop reasons), records/s (records in /
  wall);
* for the whole process: wall seconds (imports and start-up included), CPU seconds of the process
  *and its children* (token-counting and near-dedup workers; from ``os.wait4``), and peak RSS two
  ways: the largest single process (``ru_maxrss`` of the tree, kernel-exact) and the whole tree's
  summed RSS sampled every 50 ms with psutil (closer to what the machine must hold, but it counts
  pages shared between parent and workers twice and can miss a peak shorter than the interval).

The run measures, it never changes the build: output goes to a temporary folder that is deleted
unless ``--keep``. ``--markdown`` prints the tables in the form bench/RESULTS.md uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GEN = REPO / "bench" / "gen_raw.py"
#: Runs the CLI entry point from this checkout (mixer.cli has no ``__main__`` guard). The guard here
#: matters: spawned worker processes re-import the main script and must not start a second build.
RUNNER = ("import sys\nfrom mixer.cli import main\n\nif __name__ == '__main__':\n"
          "    sys.argv[0] = 'mixer'\n    main()\n")

#: Drop reasons removed by a stage other than read/normalise/filter; everything else counts as read.
REASON_GROUP = {"exact_duplicate": "exact", "near_duplicate": "near", "too_many_tokens": "select",
                "contaminated": "decontam", "contamination": "decontam", "benchmark_overlap": "decontam"}


@dataclass
class StageRow:
    stage: str
    wall_s: float
    cpu_s: float
    records_in: int | None
    records_out: int | None
    #: CPU of the worker processes the stage ran (timings.json ``cpu_workers_s``; None before it existed)
    cpu_workers_s: float | None = None
    #: peak of the sampled process-tree RSS while this stage ran (approximate: stage windows are
    #: placed from the stage durations, start-up first)
    tree_rss_mb: float | None = None

    @property
    def rate(self) -> float | None:
        if self.records_in is None or self.wall_s <= 0:
            return None
        return self.records_in / self.wall_s


@dataclass
class Run:
    scale: float
    near: bool
    raw_dir: Path
    raw_bytes: int
    raw_records: int
    gen_seconds: float | None
    ok: bool = False
    error: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    tree_rss_mb: float = 0.0
    #: CPU seconds of every process of the build's tree, sampled (see ``TreeRSSSampler``)
    tree_cpu_s: float = 0.0
    #: CPU seconds other processes used on this machine during the build: non-zero means the wall
    #: times were measured on a shared machine and are pessimistic
    other_cpu_s: float | None = None
    inproc_rss_mb: float | None = None
    output_records: int | None = None
    stages: list[StageRow] = field(default_factory=list)
    profile_top: str = ""
    #: ``mixer build --engine``: local, or ray (a Ray instance the build starts on this machine)
    engine: str = "local"
    #: with --warm: wall and CPU seconds (with children) of the first build, which fills the caches
    first_wall_s: float | None = None
    first_cpu_s: float | None = None
    #: timings.json ``near_dedup_signed_rows`` of the first and the measured build (rows near dedup
    #: signed; the rest came from the signature cache)
    first_signed_rows: int | None = None
    signed_rows: int | None = None

    @property
    def label(self) -> str:
        return f"{self.scale:g}{' near' if self.near else ''}{' ray' if self.engine == 'ray' else ''}"


# -- generation ---------------------------------------------------------------------------------

def raw_dir_for(cache: Path, scale: float, seed: int, gen_flags: list[str]) -> Path:
    suffix = "".join(f"-{f.lstrip('-')}" for f in sorted(gen_flags))
    return cache / f"raw-{scale:g}-{seed}{suffix}"


def ensure_raw(cache: Path, scale: float, seed: int, gen_flags: list[str]) -> tuple[Path, dict[str, Any], float | None]:
    """The generated raw folder for (scale, seed), generating it only when no matching manifest exists."""
    out = raw_dir_for(cache, scale, seed, gen_flags)
    manifest_path = out / "MANIFEST.json"
    sys.path.insert(0, str(GEN.parent))
    try:
        from gen_raw import GENERATOR_VERSION  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("generator_version") == GENERATOR_VERSION and m.get("scale") == scale and m.get("seed") == seed:
            return out, m, None
    print(f"generating raw sources at scale {scale:g} (seed {seed}) into {out} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(GEN), "--out", str(out), "--scale", repr(scale), "--seed", str(seed),
                    *gen_flags], check=True)
    return out, json.loads(manifest_path.read_text()), time.perf_counter() - t0


# -- measuring one build ------------------------------------------------------------------------

class TreeRSSSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants, sampled every ``interval`` s, and
    the CPU seconds every process of the tree was last seen with (``cpu_s``): it counts processes
    that ``wait4`` misses because nobody waits for them (Ray's raylet and workers outlive the
    driver's wait), at the cost of the last interval of each process."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        #: (seconds since start, summed tree RSS in bytes), to attribute the peak to a stage
        self.series: list[tuple[float, int]] = []
        self._halt = threading.Event()
        self._cpu: dict[tuple[int, float], float] = {}

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        t0 = time.perf_counter()
        while not self._halt.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self._cpu[(p.pid, p.create_time())] = t.user + t.system
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.series.append((time.perf_counter() - t0, total))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)


def near_recipe(recipe: Path, tmp: Path) -> Path:
    """A copy of ``recipe`` with ``dedup: {exact: true, near: {}}`` (near-dedup with its defaults)."""
    import yaml

    data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    dedup = data.get("dedup") or {}
    dedup["exact"] = dedup.get("exact", True)
    dedup["near"] = {}
    data["dedup"] = dedup
    path = tmp / f"{recipe.stem}-near.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy so far (all processes), or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def measure_build(recipe: Path, raw_dir: Path, out: Path, profile: Path | None,
                  extra: list[str]) -> tuple[dict[str, Any], str]:
    """Run one build as a subprocess; wall, CPU (with children) and peak RSS of its process tree."""
    with tempfile.NamedTemporaryFile("w", suffix="_mixer_runner.py", delete=False) as f:
        f.write(RUNNER)
        runner = f.name
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile)]
    cmd = [*prefix, runner, "build", str(recipe), "--raw-dir", str(raw_dir), "--out", str(out), "--quiet", *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    busy0 = _busy_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeRSSSampler(proc.pid)
    sampler.start()
    # read the pipes in threads so a chatty build cannot block; wait4 gives this child's own rusage
    outputs: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: outputs.__setitem__(k, s.read()), daemon=True)
               for k, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    for r in readers:
        r.join()
    os.unlink(runner)
    cpu = usage.ru_utime + usage.ru_stime
    busy1 = _busy_cpu_s()
    busy = (busy1 or 0.0) - (busy0 or 0.0)
    result = {"returncode": proc.returncode, "wall_s": wall, "cpu_s": cpu,
              "peak_rss_mb": usage.ru_maxrss / 1024, "tree_rss_mb": sampler.peak / 2**20,
              "tree_cpu_s": sampler.cpu_s,
              "series": sampler.series,
              "other_cpu_s": max(0.0, busy - cpu) if busy0 is not None else None}
    return result, (outputs.get("stderr", "") + outputs.get("stdout", "")).strip()


# -- turning timings.json + card.json into rows -------------------------------------------------

def _groups(stage: str) -> set[str]:
    s = stage.lower()
    g: set[str] = set()
    if s.startswith("read") or "normalis" in s or "filter" in s:
        g.add("read")
    if "near" in s:
        g.add("near")
    elif "dedup" in s:
        g.add("exact")
    if "decontam" in s:
        g.add("decontam")
    if "select" in s or "token" in s or "sample" in s:
        g.add("select")
    return g


def stage_rows(timings: dict[str, Any], card: dict[str, Any]) -> list[StageRow]:
    """One row per stage of ``timings.json`` (in its order) with records in/out from the card."""
    sources = card.get("sources", [])
    raw = sum(s.get("raw_records", 0) for s in sources)
    records_in = sum(s.get("records_in", 0) for s in sources)
    selected = sum(s.get("selected", 0) or 0 for s in sources)
    drops = {"read": 0, "exact": 0, "near": 0, "select": 0, "decontam": 0}
    for s in sources:
        for reason, n in (s.get("dropped") or {}).items():
            drops[REASON_GROUP.get(reason, "read")] += n
    final = card.get("totals", {}).get("records")
    rows: list[StageRow] = []
    current: int | None = raw
    for name, t in timings.items():
        if not isinstance(t, dict):
            continue
        g = _groups(name)
        before = current
        if "read" in g:
            current = records_in - drops["read"]
        for key in ("exact", "near", "decontam"):
            if key in g and current is not None:
                current -= drops[key]
        if "select" in g:
            current = selected
        if name.lower().startswith("shuffle"):
            current = final
        workers = t.get("cpu_workers_s")
        rows.append(StageRow(name, float(t.get("wall_s", 0.0)), float(t.get("cpu_s", 0.0)), before, current,
                             float(workers) if workers is not None else None))
    return rows


def attribute_rss(stages: list[StageRow], series: list[tuple[float, int]], wall: float) -> None:
    """Peak sampled tree RSS per stage. The stages run back to back after interpreter start-up and
    imports; the time not covered by any stage is put before the first one (start-up dominates it)."""
    if not series or not stages:
        return
    t = max(0.0, wall - sum(r.wall_s for r in stages))
    for r in stages:
        inside = [rss for ts, rss in series if t <= ts <= t + r.wall_s + 0.05]
        r.tree_rss_mb = max(inside) / 2**20 if inside else None
        t += r.wall_s


def profile_top(path: Path, n: int = 25) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("cumulative").print_stats(n)
    return buf.getvalue()


def run_scale(args: argparse.Namespace, scale: float) -> Run:
    raw, manifest, gen_s = ensure_raw(args.cache_dir, scale, args.seed, args.gen_flags)
    run = Run(scale=scale, near=args.near, raw_dir=raw, raw_bytes=manifest["bytes"],
              raw_records=manifest["records"], gen_seconds=gen_s, engine=args.engine)
    tmp = Path(tempfile.mkdtemp(prefix=f"build-{scale:g}-", dir=args.cache_dir))
    try:
        recipe = near_recipe(args.recipe, tmp) if args.near else args.recipe
        out = tmp / "out"
        prof = tmp / "build.prof" if args.profile else None
        print(f"building scale {scale:g}{' with near-dedup' if args.near else ''} ...", file=sys.stderr, flush=True)
        workers = args.workers if args.workers is not None else (1 if args.profile else None)
        extra = ["--workers", str(workers)] if workers is not None else []
        if args.engine != "local":
            extra = ["--engine", args.engine]  # Ray runs as many tasks as the cluster has CPUs
        if args.warm:  # a first build fills fresh caches; the measured one reuses them
            os.environ["MIXER_CACHE_DIR"] = str(tmp / "cache")
            os.environ.pop("MIXER_TOKEN_CACHE", None)
            os.environ.pop("MIXER_READ_CACHE", None)
            if args.warm == "tokens":  # as after a change of filter settings: every source is read again
                extra.append("--no-read-cache")
            first, _ = measure_build(recipe, raw, tmp / "first", None, extra)
            run.first_wall_s, run.first_cpu_s = first["wall_s"], first["cpu_s"]
            if (tmp / "first" / "timings.json").exists():
                run.first_signed_rows = json.loads((tmp / "first" / "timings.json").read_text()).get(
                    "near_dedup_signed_rows")
            print(f"first build (fills the caches): {first['wall_s']:.1f} s wall, {first['cpu_s']:.1f} CPU s, "
                  f"near dedup signed {run.first_signed_rows} rows", file=sys.stderr, flush=True)
        else:
            extra += ["--no-token-cache", "--no-read-cache"]
        res, log = measure_build(recipe, raw, out, prof, extra)
        run.wall_s, run.cpu_s = res["wall_s"], res["cpu_s"]
        run.peak_rss_mb, run.tree_rss_mb = res["peak_rss_mb"], res["tree_rss_mb"]
        run.tree_cpu_s = res["tree_cpu_s"]
        run.other_cpu_s = res["other_cpu_s"]
        if res["returncode"] != 0:
            run.error = f"exit {res['returncode']}: {log[-3000:]}"
            if args.near and "near" in log.lower():
                run.error = "the recipe key dedup.near was rejected or near-dedup failed: " + run.error
            return run
        timings = json.loads((out / "timings.json").read_text())
        card = json.loads((out / "card.json").read_text())
        run.inproc_rss_mb = timings.get("peak_rss_mb")
        run.signed_rows = timings.get("near_dedup_signed_rows")
        if run.signed_rows is not None:
            print(f"measured build: near dedup signed {run.signed_rows} rows", file=sys.stderr, flush=True)
        run.output_records = card.get("totals", {}).get("records")
        run.stages = stage_rows(timings, card)
        attribute_rss(run.stages, res["series"], run.wall_s)
        if args.near and not any("near" in s.stage.lower() for s in run.stages):
            flag = card.get("recipe", {}).get("near_dedup")
            run.error = (f"dedup.near was accepted (card near_dedup={flag}) but timings.json has no "
                         "near-dedup stage: near-dedup did not run in this build")
            print(f"warning: {run.error}", file=sys.stderr)
        if prof is not None and prof.exists():
            run.profile_top = profile_top(prof)
            if args.keep:
                shutil.copy(prof, args.cache_dir / f"build-{scale:g}-{args.seed}.prof")
        run.ok = True
        return run
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# -- printing --------------------------------------------------------------------------------------

def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def print_run(run: Run) -> None:
    gen = f", generated in {run.gen_seconds:.0f} s" if run.gen_seconds is not None else " (cached)"
    print(f"\n== scale {run.scale:g}{' + near-dedup' if run.near else ''}: {run.raw_records:,} raw records, "
          f"{run.raw_bytes / 1e9:.2f} GB raw{gen}")
    if not run.ok:
        print(f"BUILD FAILED: {run.error}")
        return
    if run.error:
        print(f"note: {run.error}")
    print(f"process: wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s (with workers; {run.tree_cpu_s:.1f} s whole "
          f"tree, sampled), peak RSS "
          f"{run.peak_rss_mb:,.0f} MiB largest process / {run.tree_rss_mb:,.0f} MiB tree (sampled), "
          f"timings.json peak {run.inproc_rss_mb} MiB; {_n(run.output_records)} output records")
    if run.other_cpu_s is not None:
        print(f"other processes used {run.other_cpu_s:.1f} CPU s on this machine during the build"
              + (" (wall times are pessimistic)" if run.other_cpu_s > 0.1 * run.wall_s else ""))
    print(f"{'stage':<30} {'wall s':>8} {'CPU s':>8} {'wkr CPU':>8} {'records in':>12} {'records out':>12} "
          f"{'records/s':>11} {'tree RSS MiB':>13}")
    for r in run.stages:
        print(f"{r.stage:<30} {r.wall_s:>8.2f} {r.cpu_s:>8.2f} {_r(r.cpu_workers_s):>8} {_n(r.records_in):>12} "
              f"{_n(r.records_out):>12} {_r(r.rate):>11} {_r(r.tree_rss_mb):>13}")
    tw = sum(r.wall_s for r in run.stages)
    tc = sum(r.cpu_s for r in run.stages)
    tk = sum(r.cpu_workers_s or 0.0 for r in run.stages)
    print(f"{'(sum of stages)':<30} {tw:>8.2f} {tc:>8.2f} {tk:>8.2f}")
    if run.profile_top:
        print("\ncProfile, top 25 by cumulative time:\n" + run.profile_top)


def markdown(runs: list[Run]) -> str:
    lines = ["| scale | raw records | raw GB | output records | wall s | CPU s (with workers) | "
             "CPU s (tree, sampled) | peak RSS MiB (largest process) | peak RSS MiB (tree, sampled) | "
             "other processes' CPU s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        if not r.ok:
            lines.append(f"| {r.label} | {r.raw_records:,} | {r.raw_bytes / 1e9:.2f} | "
                         f"failed | | | | | | |")
            continue
        lines.append(f"| {r.label} | {r.raw_records:,} | {r.raw_bytes / 1e9:.2f} | "
                     f"{_n(r.output_records)} | {r.wall_s:.1f} | {r.cpu_s:.1f} | {r.tree_cpu_s:.1f} | "
                     f"{r.peak_rss_mb:,.0f} | "
                     f"{r.tree_rss_mb:,.0f} | {_r(r.other_cpu_s)} |")
    lines += ["", "| scale | stage | wall s | CPU s (main process) | CPU s (workers) | records in | records out | "
              "records/s | peak tree RSS MiB (sampled, approx.) |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        for s in r.stages:
            lines.append(f"| {r.label} | {s.stage} | {s.wall_s:.2f} | {s.cpu_s:.2f} | "
                         f"{_r(s.cpu_workers_s)} | {_n(s.records_in)} | {_n(s.records_out)} | {_r(s.rate)} | "
                         f"{_r(s.tree_rss_mb)} |")
    return "\n".join(lines)


def growth(runs: list[Run]) -> str:
    ok = [r for r in runs if r.ok]
    if len(ok) < 2:
        return ""
    a, b = min(ok, key=lambda r: r.scale), max(ok, key=lambda r: r.scale)
    return (f"growth {a.scale:g} -> {b.scale:g} (x{b.scale / a.scale:.1f} data): wall x{b.wall_s / a.wall_s:.2f}, "
            f"CPU x{b.cpu_s / a.cpu_s:.2f}, peak RSS x{b.peak_rss_mb / max(a.peak_rss_mb, 1):.2f}")


def git_state() -> str:
    """The checkout's commit and whether the tracked files differ from it (numbers depend on both)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--seed", type=int, default=0, help="generator seed (the recipe keeps its own seed)")
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "v2.yaml")
    ap.add_argument("--near", action="store_true", help="add dedup.near: {} to the recipe")
    ap.add_argument("--keep", action="store_true", help="keep the build outputs (and the profile)")
    ap.add_argument("--profile", action="store_true",
                    help="run the build under cProfile and print the top 25 (implies --workers 1, so the "
                         "work happens in the profiled process)")
    ap.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="mixer build --engine (ray: a Ray instance started by the build; needs the [ray] extra)")
    ap.add_argument("--workers", type=int, help="passed to mixer build --workers (default: the build's own)")
    ap.add_argument("--warm", nargs="?", const="all", choices=["all", "tokens"],
                    help="measure a rebuild: run each scale twice with fresh caches and report the second run; "
                         "'all' (the default with --warm): read-stage and token-count caches, as when only "
                         "takes, seeds, dedup or output settings changed; 'tokens': the token-count cache "
                         "only, as when a filter setting changed (default without --warm: cold builds, "
                         "both caches off)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "mixer-bench")
    ap.add_argument("--sharegpt-raw", action="store_true", help="generator: also write the raw ShareGPT parts")
    ap.add_argument("--with-gpt35", action="store_true", help="generator: also write the GPT-3.5 Open-Orca file")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables for bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = ap.parse_args(argv)
    args.gen_flags = [f for f, on in (("--sharegpt-raw", args.sharegpt_raw), ("--with-gpt35", args.with_gpt35)) if on]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    args.recipe = args.recipe.resolve()

    shown = args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python "
          f"{platform.python_version()}; recipe {shown}; checkout {git_state()}")
    runs = []
    for scale in args.scale:
        run = run_scale(args, scale)
        print_run(run)
        runs.append(run)
    g = growth(runs)
    if g:
        print("\n" + g)
    if args.markdown:
        print("\n" + markdown(runs))
        if g:
            print("\n" + g)
    if args.json:
        args.json.write_text(json.dumps([{**{k: v for k, v in vars(r).items() if k not in ("stages", "raw_dir")},
                                          "raw_dir": str(r.raw_dir),
                                          "stages": [vars(s) for s in r.stages]} for r in runs], indent=2))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
