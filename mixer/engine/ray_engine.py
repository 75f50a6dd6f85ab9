"""``RayEngine``: the build's units of work as Ray tasks, on one machine or a cluster.

The stages do not change: they plan their units on the driver (a source with a file and a byte or
row range, a batch of candidate rows to sign, a chunk of texts to count, a shard to write) and call
``map``/``scatter``/``submit``. This engine sends each unit to Ray as one task, with the ``SPREAD``
scheduling strategy so a source cut into parts is read on every node, and collects the results by
the list of object references it made, so results come back in unit order whatever order the tasks
finish in. That is the whole of the determinism argument: no result is combined in completion order.

Why tasks and not ``ray.data``: the units are already planned and few (tens to thousands), each
result is small (counters, signatures, the names of Arrow files it wrote to the work folder), and the
order must be kept. ``ray.data.from_items(...).map_batches`` would add a streaming executor, block
bookkeeping and ``preserve_order`` (off by default: ray issue 40216) for no gain; a plain task per
unit is what Ray Data does underneath for such a list anyway.

What crosses the wire: the unit (plain values) and the function (a module-level function or a
``functools.partial`` of one, put in the object store once per ``map``); bulk data stays in the work
folder, which must be a path every node reaches (shared storage). A worker killed mid-unit (node
lost, OOM killer) is retried by Ray (``max_retries``); every unit writes only its own files, under
names fixed by the unit, so a retry overwrites what the killed attempt left. An input error raised in
a task (``MixerError``: bad record, file, line) comes back as the same exception with the same
message, not as a Ray traceback; any other exception is Ray's ``RayTaskError``, which is also an
instance of the original exception's class.

Ray is an optional extra: importing this module does not import Ray; constructing the engine does,
and says which extra to install when it is missing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mixer.core.errors import MixerError
from mixer.core.executor import Pending, scatter_chunks

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")

INSTALL_HINT = "the Ray engine needs the [ray] extra: pip install -e '.[ray]' (or pip install 'mixer[ray]')"
#: the environment that shapes what a unit does (caches, damage log); Ray workers are long-lived
#: processes started by the raylet, so they do not inherit the driver's environment: each unit
#: carries these variables and applies them before it runs
ENV_PREFIX = "MIXER_"
#: how long a failed map waits for its other running units before the error goes up (a unit is seconds)
UNIT_SETTLE_S = 300.0


def import_ray() -> Any:
    """The ``ray`` module, or a ``MixerError`` (exit 2 at the CLI) naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MixerError(f"--engine ray: Ray is not installed; {INSTALL_HINT}") from None
    return ray


@dataclass
class UnitFailure:
    """A ``MixerError`` raised in a task, as plain values: some of mixer's errors take several
    constructor arguments (``InputError(location, problem)``), which Ray's pickled exceptions cannot
    rebuild, and the user should see mixer's message, not a remote traceback."""

    cls: type[MixerError]
    message: str
    state: dict[str, Any] = field(default_factory=dict)

    def rebuild(self) -> MixerError:
        error = self.cls.__new__(self.cls)
        Exception.__init__(error, self.message)
        error.__dict__.update(self.state)
        return error


def run_unit(env: dict[str, str], fn: Callable[..., R], *args: Any) -> tuple[str, R | UnitFailure]:
    """What one Ray task runs: apply the driver's ``MIXER_*`` environment, call ``fn(*args)``, and
    return (node id, result or the input error). The node id lets the driver say where units ran."""
    import ray

    for key in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in env]:
        del os.environ[key]
    os.environ.update(env)
    node = ray.get_runtime_context().get_node_id()
    try:
        return node, fn(*args)
    except MixerError as e:
        return node, UnitFailure(type(e), str(e), dict(e.__dict__))


class RayEngine:
    """Runs the build's units as Ray tasks (see the module docstring).

    ``address``: a running cluster (``ray start --head`` printed it; ``"auto"`` finds the local one);
    None starts a Ray instance on this machine for the build, unless the process is already connected
    (a test's cluster, a notebook), which the engine then uses and leaves running. ``max_retries``:
    how often Ray re-runs a unit whose worker died.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, max_retries: int = 3) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        self._task = ray.remote(run_unit).options(max_retries=max_retries, scheduling_strategy="SPREAD")
        self._threads: ThreadPoolExecutor | None = None
        #: (function name, node id) -> units run there, for tests and for saying where work ran
        self.units_run: Counter[tuple[str, str]] = Counter()

    @property
    def parallelism(self) -> int:
        """The cluster's CPUs now (nodes that join later are used, but not planned for)."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _start(self, fn: Callable[..., R], fn_ref: Any, *args: Any) -> tuple[Any, Pending[R]]:
        ref = self._task.remote(_mixer_env(), fn_ref, *args)
        name = _name(fn)

        def wait() -> R:
            node, result = self._ray.get(ref)
            self.units_run[(name, node)] += 1
            if isinstance(result, UnitFailure):
                raise result.rebuild()
            return result

        return ref, wait

    def map(self, fn: Callable[[U], R], units: Iterable[U], *, threads: bool = False,
            local: bool = False) -> Iterator[R]:
        units = list(units)
        if local or not units:
            return (fn(u) for u in units)
        # ``threads`` work (hashing input files, encoding a shard) reads and writes by path, so on
        # Ray it is a task like any other: the files are on storage every node reaches
        fn_ref = self._ray.put(fn)
        started = [self._start(fn, fn_ref, u) for u in units]
        return self._in_order(started)

    def _in_order(self, started: list[tuple[Any, Pending[R]]]) -> Iterator[R]:
        """The units' results in order. When one fails, the units still running are waited for before its
        error goes up: they write into the build's work folder, which the build removes as the error passes,
        and a unit still writing there would turn the error naming the bad record into the removal's own."""
        for i, (_, wait) in enumerate(started):
            try:
                yield wait()
            except BaseException:
                rest = [ref for ref, _ in started[i + 1:]]
                if rest:
                    self._ray.wait(rest, num_returns=len(rest), timeout=UNIT_SETTLE_S)
                raise

    def scatter(self, fn: Callable[[list[T]], R], items: Sequence[T], *, local: bool = False,
                width: int | None = None, max_chunk: int | None = None) -> Pending[list[R]]:
        width = min(self.parallelism, width or self.parallelism)
        if local or width <= 1 or len(items) < 2:
            result = [fn(list(items))]
            return lambda: result
        fn_ref = self._ray.put(fn)
        started = [self._start(fn, fn_ref, chunk) for chunk in scatter_chunks(items, width, max_chunk)]
        return lambda: list(self._in_order(started))

    def submit(self, fn: Callable[..., R], *args: Any, threads: bool = False) -> Pending[R]:
        if threads:
            # driver work over state the build holds (writing dropped/ from the drop sink): the
            # contract lets a distributed engine run it in the driver, here on a thread
            if self._threads is None:
                self._threads = ThreadPoolExecutor(2)
            return self._threads.submit(fn, *args).result
        return self._start(fn, self._ray.put(fn), *args)[1]

    def release(self) -> None:
        """Ray keeps its workers between stages (they are cheap to keep and slow to start)."""

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mixer_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}


def _name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)
    return getattr(inner, "__name__", type(inner).__name__)
