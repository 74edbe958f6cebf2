"""``compare --scheduler``: a comparison's units of work run as a Dask graph on many workers.

The units are those of the single process (:class:`repsim_cli.compare.Comparison`):

1. **layer tasks**, one per layer a pending cell needs: the layer's state for every metric that
   needs it (``MetricInfo.prepare`` through a :class:`~repsim_cli.metrics.contract.LayerContext`
   of the worker's own engine, one layer at a time so shared intermediates are built once), and,
   for the inner-product metrics (the CKA family, whose state is a handle into the engine) on a
   sample-side plan that holds the Grams, the layer's centred Gram as its packed triangle;
2. **block tasks**, one per block of cells the single process computes at once
   (:func:`~repsim_cli.schedule.covering_blocks`): ``Comparison._block`` on the worker, with the
   states of the block's layers (Dask runs the task where most of those bytes already are and
   moves the rest). Handle states are rebuilt on the worker from its engine after it adopts the
   Grams built by the layer tasks. With per-cell statistics (``--bootstrap``, ``--jackknife``,
   ``--permutations``) the block task computes its cells' statistics too, on the worker's own
   :class:`~repsim_cli.stats.runner.CellStatistics` (every replicate's examples depend only on
   the seed and n, each cell's statistics only on its two layers), and returns them in the
   journal rows' note field, as a single process journals them.

Every worker rebuilds the comparison from a small :class:`Recipe` (store paths, layer keys,
metric specs and the client's engine plan), so a task depends only on the stores: a worker lost
mid-run is replaced and its tasks and the states it held are computed again by Dask, from the
stores, on any worker. Each cell is computed by the same calls on the same values as in one
process, so values are bitwise those of a single run with the same BLAS thread count.

The client keeps the run: it journals each block's cells as the block arrives (the resume
journal of :mod:`repsim_cli.schedule`), then assembles the results exactly as a resumed run does
and writes them atomically, like any compare.

Dask: Rocklin (2015), "Dask: Parallel Computation with Blocked algorithms and Task Scheduling",
SciPy; https://distributed.dask.org.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._progress import ProgressFn, no_progress
from .errors import RepsimError
from .schedule import Cell, Shard, shard_cells

if TYPE_CHECKING:
    from .compare import Comparison
    from .engine.plan import Plan
    from .metrics.contract import CellBlock
    from .results import Results
    from .schedule import Journal
    from .stats.options import StatsOptions

INSTALL_HINT = "pip install 'repsim-cli[dask]'"
# Test-only: a path; the first block task to create it makes its worker process exit at once
# (a worker lost mid-run, as a killed or pre-empted node would be).
EXIT_ONCE_ENV = "REPSIM_TEST_DASK_EXIT_ONCE"
WAIT_FOR_WORKERS_S = 600  # a cluster whose jobs are still queued (dask-jobqueue) gets this long
LayerSpec = tuple[str, int, str]  # (layer key, store index, layer name)
JournalRow = tuple[int, int, int, float, "float | None", "str | None"]  # (metric, i, j, value, se, note)


class SchedulerError(RepsimError):
    """The Dask scheduler cannot be reached or used, or a worker cannot do the work."""


def import_distributed() -> Any:
    """``dask.distributed``, or a :class:`RepsimError` saying what to install."""
    try:
        import distributed
    except ImportError:
        raise RepsimError(f"--scheduler needs Dask's distributed scheduler: {INSTALL_HINT}") from None
    return distributed


@dataclass(frozen=True)
class Recipe:
    """What a worker needs to rebuild the client's comparison: absolute store paths with their
    fingerprints, the engine's layers and the results' rows and columns as (key, store, name),
    the layout's models and model pairs, the metric specs (texts), the client's engine plan
    and state budget, and the per-cell statistics asked for. Small; sent with every task so any
    worker can run any task."""

    token: str
    paths: tuple[str, ...]
    fingerprints: tuple[str, ...]
    engine_layers: tuple[LayerSpec, ...]
    rows: tuple[LayerSpec, ...]
    cols: tuple[LayerSpec, ...]
    row_models: tuple[int, ...]
    col_models: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    specs: tuple[str, ...]
    plan: Plan
    threads: int
    statistics: StatsOptions | None = None


def make_recipe(comparison: Comparison, threads: int) -> Recipe:
    """The :class:`Recipe` of a prepared comparison (run on the client)."""
    stores: list[Any] = []
    paths: list[str] = []

    def layer(ref: Any) -> LayerSpec:
        path = str(Path(ref.store.path).resolve())
        if path not in paths:
            paths.append(path)
            stores.append(ref.store)
        return (ref.key, paths.index(path), ref.name)

    engine_layers = tuple(layer(r) for r in comparison.engine.refs)
    rows = tuple(layer(r) for r in comparison.refs_a)
    cols = tuple(layer(r) for r in comparison.refs_b)
    layout = comparison.layout
    return Recipe(
        token=uuid.uuid4().hex, paths=tuple(paths),
        fingerprints=tuple(s.fingerprint() for s in stores), engine_layers=engine_layers,
        rows=rows, cols=cols, row_models=tuple(layout.row_models),
        col_models=tuple(layout.col_models), pairs=tuple(tuple(p) for p in layout.pairs),  # type: ignore[misc]
        specs=tuple(s.text for s in comparison.specs), plan=comparison.plan, threads=threads,
        statistics=None if comparison.statistics is None else comparison.statistics.options,
    )  # fmt: skip


# ---------------------------------------------------------------------------- worker side
@dataclass
class _WorkerRun:
    comparison: Comparison
    stores: list[Any]
    cache: Path
    lock: threading.Lock


MAX_WORKER_RUNS = 4  # runs a worker keeps at once (several clients may share a cluster)
_RUNS: dict[str, _WorkerRun] = {}
_RUNS_LOCK = threading.Lock()


def _open_run(recipe: Recipe) -> _WorkerRun:
    """This worker's copy of the comparison (stores opened, engine on the client's plan)."""
    with _RUNS_LOCK:
        run = _RUNS.get(recipe.token)
        if run is not None:
            return run
        from .compare import Comparison, Layout, Model
        from .engine import GramEngine, LayerRef
        from .metrics import parse_spec
        from .states import StateStore

        stores = [_open_on_worker(path) for path in recipe.paths]
        for store, path, fingerprint in zip(stores, recipe.paths, recipe.fingerprints, strict=True):
            if store.fingerprint() != fingerprint:
                raise SchedulerError(f"{path}: on this worker the store differs from the client's "
                                     "(another file at the same path?)")  # fmt: skip
        refs = {key: LayerRef(key, stores[s], name) for key, s, name in recipe.engine_layers}
        refs.update({key: LayerRef(key, stores[s], name) for key, s, name in (*recipe.rows, *recipe.cols)
                     if key not in refs})  # fmt: skip
        layout = Layout([refs[k] for k, _, _ in recipe.rows], [refs[k] for k, _, _ in recipe.cols],
                        list(recipe.row_models), list(recipe.col_models), list(recipe.pairs))  # fmt: skip
        cache = Path(tempfile.mkdtemp(prefix="repsim-dask-"))
        engine = GramEngine([refs[k] for k, _, _ in recipe.engine_layers], recipe.plan, cache_dir=cache)
        models = [Model(str(i), store, []) for i, store in enumerate(stores)]
        comparison = Comparison(models, layout, [parse_spec(t) for t in recipe.specs], recipe.plan,
                                engine, {}, StateStore(0, cache))  # fmt: skip
        if recipe.statistics is not None:
            from .stats.runner import attach_statistics

            attach_statistics(comparison, recipe.statistics)
        run = _WorkerRun(comparison, stores, cache, threading.Lock())
        weakref.finalize(run, shutil.rmtree, cache, True)
        _RUNS[recipe.token] = run
        while len(_RUNS) > MAX_WORKER_RUNS:  # runs whose client died without saying goodbye
            del _RUNS[next(iter(_RUNS))]  # dropped, not closed: a task may still hold it
        return run


def _open_on_worker(path: str) -> Any:
    from .store import open_store

    try:
        return open_store(path)
    except (RepsimError, OSError) as exc:  # a worker that joined after check_workers
        raise SchedulerError(f"{path}: not readable on Dask worker {_worker_name()} "
                             f"({_reason(path, exc)}); every worker must read the stores at the "
                             "same path") from None  # fmt: skip


def _reason(path: str, exc: BaseException) -> str:
    """An error's message without the path it starts with."""
    text = str(exc)
    return text.removeprefix(f"{path}: ") if text.startswith(f"{path}: ") else text


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "(not in a worker)"


def forget_run(token: str) -> None:
    """Drop this worker's copy of a finished run (its engine, states and disk cache)."""
    with _RUNS_LOCK:
        run = _RUNS.pop(token, None)
    if run is None:
        return
    run.comparison.close()
    for store in run.stores:
        with contextlib.suppress(Exception):
            store.close()
    shutil.rmtree(run.cache, ignore_errors=True)


def check_stores(paths: Sequence[str], fingerprints: Sequence[str]) -> list[str]:
    """On a worker: a problem line for each store it cannot open, or that differs from the
    client's (by fingerprint); empty when all are readable."""
    from .store import open_store

    def problem(path: str, fingerprint: str) -> str | None:
        try:
            with open_store(path) as store:
                if store.fingerprint() != fingerprint:
                    return f"{path}: differs from the client's copy (another file at the same path)"
        except (RepsimError, OSError) as exc:
            return f"{path}: not readable ({_reason(path, exc)})"
        return None

    found = (problem(p, f) for p, f in zip(paths, fingerprints, strict=True))
    return [p for p in found if p is not None]


@contextlib.contextmanager
def _task(recipe: Recipe) -> Iterator[_WorkerRun]:
    """A task's context: this worker's run, its lock (the engine is not thread-safe), the BLAS cap,
    and the warnings it raises recorded (to be raised again on the client)."""
    from ._threads import limit_threads

    run = _open_run(recipe)
    with run.lock, limit_threads(recipe.threads):
        yield run


@dataclass
class LayerStates:
    """What a layer task returns: the layer's states by metric index (handle states, which live
    in the engine, are left out) and, when shipped, its Gram as (triangle, diagonal)."""

    states: dict[int, Any]
    gram: tuple[Any, Any] | None
    warnings: list[tuple[str, type[Warning]]]


def _recorded(caught: Iterable[warnings.WarningMessage]) -> list[tuple[str, type[Warning]]]:
    return [(str(w.message), w.category) for w in caught]


def layer_task(recipe: Recipe, key: str, spec_indices: Sequence[int], ship_gram: bool) -> LayerStates:
    """Build one layer's states for the metrics ``spec_indices`` on this worker (and its Gram
    triangle when ``ship_gram``), as ``Comparison.prepare_states`` does for one layer."""
    from .states import StateStore

    with _task(recipe) as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a state store of the task's own: Dask keeps the states, nothing is held or spilled here
        comparison = replace(run.comparison, states=StateStore(1 << 62))
        ref = next(r for r in comparison.engine.refs if r.key == key)
        states = {}
        for s in spec_indices:
            state = comparison.state(comparison.specs[s], ref)
            if not getattr(state, "pinned", False):
                states[s] = state
        comparison.shared.drop_layer(key)
        gram = _grams(comparison).export(ref) if ship_gram else None
    return LayerStates(states, gram, _recorded(caught))


def _grams(comparison: Comparison) -> Any:
    from .engine.strategies.held import TriangleGroups

    grams = comparison.engine._grams
    assert isinstance(grams, TriangleGroups)
    return grams


def block_rows(spec_index: int, rows: Sequence[int], cols: Sequence[int], wanted: Sequence[Cell],
               block: CellBlock) -> list[JournalRow]:
    """The journal rows of a block's ``wanted`` cells, in the block's order."""
    mine = set(wanted)
    out: list[JournalRow] = []
    for bi, i in enumerate(rows):
        for bj, j in enumerate(cols):
            if (i, j) in mine:
                se = None if block.std_error is None else float(block.std_error[bi, bj])
                out.append((spec_index, i, j, float(block.value[bi, bj]), se, block.cell_notes.get((bi, bj))))
    return out


def block_task(
    recipe: Recipe, spec_index: int, rows: Sequence[int], cols: Sequence[int], wanted: Sequence[Cell],
    layers: dict[str, LayerStates], grams: dict[str, tuple[Any, Any]],
) -> tuple[CellBlock, list[JournalRow], list[tuple[str, type[Warning]]]]:
    """``Comparison._block`` for one block of one metric on this worker, from the layer tasks'
    states ``layers`` (by layer key), which seed a state store of the task's own, and Grams
    ``grams`` (by layer key), which this worker's engine adopts. Returns the block, its journal
    rows (with the cells' statistics when the run has them) and the warnings raised."""
    _exit_once_for_tests()
    from .states import StateStore

    with _task(recipe) as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparison = run.comparison
        spec = comparison.specs[spec_index]
        engine_refs = {r.key: r for r in comparison.engine.refs}
        for key, gram in grams.items():
            _grams(comparison).adopt(engine_refs[key], *gram)
        store = StateStore(1 << 62)
        state_key = spec.info.key_of(spec.params)
        for key, layer in layers.items():
            if spec_index in layer.states:
                store.get(state_key, key, partial(_given, layer.states[spec_index]))
        view = replace(comparison, states=store)
        block = view._block(spec, list(rows), list(cols), set(wanted))
        journal_rows = block_rows(spec_index, rows, cols, wanted, block)
        statistics = comparison.statistics
        if statistics is not None:
            statistics.comparison = view  # its states are the layer tasks' (RBF CKA's kernels)
            try:
                journal_rows = view._with_statistics(spec, list(rows), list(cols), journal_rows, {})
            finally:
                statistics.comparison = comparison
    forwarded = [w for layer in layers.values() for w in layer.warnings]
    return block, journal_rows, forwarded + _recorded(caught)


def states_part(layer: LayerStates) -> LayerStates:
    """A layer task's result without its Gram (what the per-pair blocks need)."""
    return LayerStates(layer.states, None, layer.warnings)


def gram_part(layer: LayerStates) -> tuple[Any, Any] | None:
    """A layer task's Gram (triangle, diagonal)."""
    return layer.gram


def same(value: Any) -> Any:
    """The value itself: run on a chosen worker, it holds a copy there (sent as soon as it exists)."""
    return value


def _given(state: Any) -> Any:
    """A state built by a layer task, handed to the state store as its "build"."""
    return state


def _exit_once_for_tests() -> None:
    flag = os.environ.get(EXIT_ONCE_ENV)
    if not flag:
        return
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(70)


# ---------------------------------------------------------------------------- client side
def parse_scheduler(text: str) -> tuple[str, int | None]:
    """``local:W`` → ("local", W); anything else is a scheduler address (``tcp://host:8786``, a
    scheduler file path is not accepted)."""
    if text.startswith("local:") or text == "local":
        _, _, count = text.partition(":")
        try:
            workers = int(count) if count else os.cpu_count() or 1
        except ValueError:
            workers = 0
        if workers < 1:
            raise RepsimError(f"--scheduler {text!r}: expected local:W with W ≥ 1 workers, e.g. local:4")
        return "local", workers
    return text, None


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Put ``os.environ`` back as it was on exit: a Nanny sets its workers' variables
    (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) in its own process's environment before
    spawning each worker, and would leave them there."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in [n for n in os.environ if n not in saved]:
            del os.environ[name]
        os.environ.update(saved)


@contextlib.contextmanager
def connect(scheduler: str) -> Iterator[Any]:
    """A ``distributed.Client`` of ``scheduler`` (an address, or ``local:W``: a local cluster of W
    worker processes with one thread each), closed (with its cluster) on exit."""
    import logging

    distributed = import_distributed()
    address, workers = parse_scheduler(scheduler)
    with contextlib.ExitStack() as stack:
        if workers is not None:
            stack.enter_context(environment_kept())
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.CRITICAL,  # a task's error reaches the client: one line
            ))  # fmt: skip
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(address, timeout="20s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise SchedulerError(f"--scheduler {address}: cannot connect ({exc})") from None
        yield client


def check_workers(client: Any, recipe: Recipe) -> None:
    """Every worker opens every store before any work is submitted; a store a worker cannot read
    (not on its file system, no permission) or that differs there raises one error naming the
    path and the worker."""
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError:
            raise SchedulerError(f"no Dask worker joined the scheduler {client.scheduler.address} in "
                                 f"{WAIT_FOR_WORKERS_S // 60} minutes") from None  # fmt: skip
    found = client.run(check_stores, list(recipe.paths), list(recipe.fingerprints))
    for worker, problems in sorted(found.items()):
        if problems:
            raise SchedulerError(f"{problems[0]} on Dask worker {worker}; every worker must "
                                 "read the stores at the same path")  # fmt: skip


class _Replay:
    """A journal that already holds every cell: ``Comparison.run`` then only assembles them."""

    def __init__(self, done: dict[tuple[int, int, int], tuple[float, float | None]],
                 notes: dict[tuple[int, int, int], str]) -> None:  # fmt: skip
        self._done = done
        self.notes = notes

    def load(self) -> dict[tuple[int, int, int], tuple[float, float | None]]:
        return dict(self._done)

    def open(self, resume: bool) -> None:
        pass

    def write(self, rows: Any) -> None:
        raise AssertionError("every cell was computed on the workers")


def pending_cells(comparison: Comparison, shard: Shard | None,
                  done: dict[tuple[int, int, int], Any]) -> list[list[Cell]]:  # fmt: skip
    """Per metric, the cells of this run (shard) not yet in ``done``, as ``Comparison.run``."""
    return [
        [c for c in shard_cells(comparison.layout.cells(s.info.symmetric), shard) if (k, *c) not in done]
        for k, s in enumerate(comparison.specs)
    ]


def ships_grams(comparison: Comparison) -> bool:
    """Whether layer tasks ship Gram triangles: inner-product metrics on a sample-side plan whose
    strategy holds whole Grams (stacked or packed); elsewhere a block task's engine builds what
    it needs itself."""
    from .engine.strategies.held import Packed, Stacked

    return (comparison.plan.side == "sample" and isinstance(comparison.plan.strategy, (Packed, Stacked))
            and any(s.info.inner_products_only for s in comparison.specs))  # fmt: skip


def run_on_dask(
    comparison: Comparison,
    scheduler: str,
    *,
    shard: Shard | None = None,
    journal: Journal | None = None,
    resume: bool = False,
    threads: int | None = None,
    progress: ProgressFn = no_progress,
) -> Results:
    """``comparison.run`` with the work on a Dask cluster (``scheduler``: an address or ``local:W``).

    Cells already in ``journal`` (with ``resume``) are not computed again; every block's cells
    are journalled as they arrive. Returns the same :class:`~repsim_cli.results.Results` as
    ``comparison.run(shard, journal, resume)`` (bitwise, for the same BLAS thread count
    ``threads``, default 1 per worker).
    """
    import_distributed()
    from .metrics._linalg import warn_notes

    done = journal.load() if journal is not None and resume else {}
    notes = dict(journal.notes) if journal is not None else {}
    if journal is not None:
        journal.open(resume=bool(done))
    pending = pending_cells(comparison, shard, done)
    if any(pending):
        recipe = make_recipe(comparison, threads or 1)
        with connect(scheduler) as client:
            check_workers(client, recipe)
            try:
                for s, block_notes, rows in _compute(client, comparison, recipe, pending, progress):
                    if journal is not None:
                        journal.write(rows)
                    for spec_index, i, j, value, se, note in rows:
                        done[(spec_index, i, j)] = (value, se)
                        if note:
                            notes[(spec_index, i, j)] = note
                    warn_notes(comparison.specs[s].name, block_notes)
            finally:
                with contextlib.suppress(Exception):
                    client.run(forget_run, recipe.token)
    replay = cast("Journal", _Replay(done, notes))
    return comparison.run(shard=shard, journal=replay, resume=True)


def _compute(
    client: Any, comparison: Comparison, recipe: Recipe, pending: list[list[Cell]], progress: ProgressFn
) -> Iterator[tuple[int, set[str], list[JournalRow]]]:
    """Submit the layer and block tasks; yield each block's (metric index, notes, journal rows) as
    it completes."""
    distributed = import_distributed()
    ship = ships_grams(comparison)
    refs_a, refs_b = comparison.refs_a, comparison.refs_b
    wanted: dict[str, list[int]] = {}
    for s, cells in enumerate(pending):
        for i, j in cells:
            for key in (refs_a[i].key, refs_b[j].key):
                entry = wanted.setdefault(key, [])
                if s not in entry:
                    entry.append(s)
    engine_order = [r.key for r in comparison.engine.refs]
    if ship:  # a block's inner products need the Grams of every layer of its groups: all of them
        for key in engine_order:
            wanted.setdefault(key, [])
    order = {k: n for n, k in enumerate(engine_order)}
    layer_futures = {}
    for key in sorted(wanted, key=lambda k: order.get(k, len(order))):
        layer_futures[key] = client.submit(layer_task, recipe, key, wanted[key], ship, pure=False,
                                           key=f"repsim-layer-{key}-{recipe.token}")  # fmt: skip
    token = recipe.token
    # the small tasks run before the next layer's (priority): each Gram leaves for the hub at once
    states = {k: client.submit(states_part, f, pure=False, priority=1, key=f"repsim-states-{k}-{token}")
              for k, f in layer_futures.items()}  # fmt: skip
    grams = {}
    if ship:
        # The inner-product blocks need every layer's Gram in one place: each Gram is sent to one
        # worker (the hub) as soon as it is built, while the other layers' Grams are being built.
        workers = sorted(client.scheduler_info().get("workers", {}))
        for k, f in layer_futures.items():
            local = client.submit(gram_part, f, pure=False, priority=1, key=f"repsim-gram-{k}-{token}")
            grams[k] = client.submit(same, local, workers=workers[:1], allow_other_workers=True,
                                     pure=False, priority=1, key=f"repsim-hub-{k}-{token}")  # fmt: skip
    blocks: dict[Any, int] = {}  # a block task's future → its metric's index
    for s, spec in enumerate(comparison.specs):
        in_run = set(pending[s])
        all_grams = grams if spec.info.inner_products_only else {}
        for n, (rows, cols) in enumerate(comparison.blocks_of(spec, pending[s])):
            mine = [(i, j) for i in rows for j in cols if (i, j) in in_run]
            keys = {refs_a[i].key for i in rows} | {refs_b[j].key for j in cols}
            future = client.submit(block_task, recipe, s, rows, cols, mine,
                                   {k: states[k] for k in keys}, all_grams, pure=False,
                                   key=f"repsim-block-{s}-{n}-{token}")  # fmt: skip
            blocks[future] = s
    total = sum(len(c) for c in pending)
    finished = 0
    warned: set[tuple[str, type[Warning]]] = set()
    layers_left = set(layer_futures.values())
    # No future is cancelled here: closing the client (or the cluster) releases them all, and
    # cancelling keys already released trips an assertion in the scheduler.
    for future in distributed.as_completed([*layer_futures.values(), *blocks]):
        if future in layers_left:  # counted, not fetched: its states stay on the worker
            layers_left.discard(future)
            if future.status == "error":
                future.result()  # the layer's error (e.g. a constant layer), at once
            progress("layer states (dask)", len(layer_futures) - len(layers_left), len(layer_futures))
            continue
        s = blocks.pop(future)
        try:
            block, rows_out, caught = future.result()
        except distributed.KilledWorker as exc:
            raise SchedulerError(
                f"Dask workers kept dying on the task {exc.args[0] if exc.args else ''} "
                "(out of memory?); the cells finished so far are journalled"
            ) from None
        for message, category in caught:
            if (message, category) not in warned:  # a layer's warning reaches several blocks
                warned.add((message, category))
                warnings.warn(message, category, stacklevel=2)
        finished += len(rows_out)
        progress("cells (dask)", finished, total)
        yield s, block.notes, rows_out

