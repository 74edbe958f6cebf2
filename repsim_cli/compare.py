"""``compare_stores``: every requested metric over every layer pair of one or two stores."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._progress import ProgressFn, no_progress
from ._version import __version__
from .engine import GramEngine, LayerCost, LayerRef, Plan, make_plan
from .engine.plan import Side
from .errors import LayerNotFoundError, RepsimError, ShapeMismatchError
from .globs import glob_matches
from .metrics import MetricSpec, parse_spec
from .metrics._linalg import warn_notes
from .metrics.contract import Cell as MetricCell
from .metrics.contract import CellBlock, LayerContext, SharedCache
from .metrics.sides import metric_demands
from .results import MetricResult, Results
from .schedule import Cell, Journal, Shard, covering_blocks, matrix_cells, row_groups, shard_cells
from .states import StateStore
from .stats.options import StatsOptions, decode_note, encode_note
from .store import ActivationStore, open_store

if TYPE_CHECKING:
    from .stats.runner import CellStatistics


def select_layers(store: ActivationStore, patterns: Sequence[str] | None) -> list[str]:
    """Layers of ``store`` matching any glob in ``patterns`` (all when None), in store order.

    Globs are those of :mod:`repsim_cli.globs` (``*`` stays within a dotted component, ``**``
    crosses dots); each pattern may hold several separated by commas. A pattern matching nothing
    raises :class:`LayerNotFoundError` listing the available layers.
    """
    if not patterns:
        return list(store.layers)
    globs = [g.strip() for p in patterns for g in p.split(",") if g.strip()]
    for g in globs:
        if not any(glob_matches(g, name) for name in store.layers):
            raise LayerNotFoundError(
                f"{store.path}: no layer matches {g!r}; available: {', '.join(store.layers)}"
            )
    return [name for name in store.layers if any(glob_matches(g, name) for g in globs)]


def check_aligned(a: ActivationStore, b: ActivationStore) -> None:
    """Two stores must hold the same samples in the same order (same n, same ids)."""
    if a.n_samples != b.n_samples:
        raise ShapeMismatchError(
            f"{b.path}: {b.n_samples} samples, but {a.path} has {a.n_samples}; "
            "stores must hold the same samples"
        )
    ids_a, ids_b = a.ids(), b.ids()
    if ids_a.dtype.kind != ids_b.dtype.kind or not np.array_equal(ids_a, ids_b):
        mismatch = next(
            (i for i, (x, y) in enumerate(zip(ids_a.tolist(), ids_b.tolist(), strict=True)) if x != y), 0
        )
        raise ShapeMismatchError(
            f"{b.path}: sample ids differ from {a.path} (first at index {mismatch}: "
            f"{np.asarray(ids_b[mismatch]).tolist()!r} vs {np.asarray(ids_a[mismatch]).tolist()!r}); "
            "stores must hold the same samples "
            "in the same order"
        )


PAIRINGS = ("all", "first", "consecutive")


@dataclass(frozen=True)
class Model:
    """One network's activation store in a comparison, with the layers selected from it."""

    name: str
    store: ActivationStore
    layers: list[str]


def model_name(text: str) -> tuple[str | None, str]:
    """Split a ``NAME=PATH`` store argument into (NAME, PATH); a bare path gives (None, PATH).

    A path that exists as written is a path even if it contains ``=``.
    """
    name, sep, path = text.partition("=")
    if sep and name and "/" not in name and not Path(text).exists():
        return name, path
    return None, text


def read_store_list(args: Sequence[str], list_file: str | Path | None = None) -> list[tuple[str | None, str]]:
    """The stores of a comparison: ``[NAME=]PATH`` arguments, then the lines of ``list_file``
    (blank lines and lines starting with ``#`` ignored), as (name or None, path)."""
    texts = list(args)
    if list_file is not None:
        try:
            lines = Path(list_file).read_text().splitlines()
        except OSError as exc:
            raise RepsimError(f"{list_file}: cannot read the store list ({exc.strerror})") from None
        texts += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [model_name(t) for t in texts]


def default_model_name(path: str, all_paths: Sequence[str]) -> str:
    """A model's default name: its file stem, or the path itself where stems collide."""
    stem = Path(path).stem
    clashes = [p for p in all_paths if Path(p).stem == stem]
    return stem if len(clashes) <= 1 else path


def model_pairs(n_models: int, pairing: str = "all", within: bool = False) -> list[tuple[int, int]]:
    """Which (model_a, model_b) blocks a run computes, in order.

    One model: itself. ``all``: every unordered pair of distinct models (i < j); ``first``: the first
    against each other; ``consecutive``: (i, i + 1), a checkpoint series. ``within`` adds each model
    against itself.
    """
    if pairing not in PAIRINGS:
        raise RepsimError(f"--pairs {pairing!r}: expected one of {', '.join(PAIRINGS)}")
    if n_models == 1:
        return [(0, 0)]
    if pairing == "all":
        pairs = [(i, j) for i in range(n_models) for j in range(i + 1, n_models)]
    elif pairing == "first":
        pairs = [(0, j) for j in range(1, n_models)]
    else:
        pairs = [(i, i + 1) for i in range(n_models - 1)]
    if within:
        pairs += [(i, i) for i in range(n_models)]
    return sorted(pairs)


@dataclass(frozen=True)
class Layout:
    """Where each model-pair block sits in the results matrix.

    With one block (one store with itself, or two stores) the rows are model a's layers and the
    columns model b's, as a two-store comparison has always been. With several blocks, rows and
    columns both list every model's layers in model order, and block (i, j) is the submatrix of
    model i's rows and model j's columns; cells outside the requested blocks are not computed.
    """

    rows: list[LayerRef]
    cols: list[LayerRef]
    row_models: list[int]
    col_models: list[int]
    pairs: list[tuple[int, int]]

    def block_ranges(self, pair: tuple[int, int]) -> tuple[list[int], list[int]]:
        """Row and column indices of one model pair's block."""
        i, j = pair
        return ([r for r, m in enumerate(self.row_models) if m == i],
                [c for c, m in enumerate(self.col_models) if m == j])  # fmt: skip

    def feature_blocks(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per model pair, its (row layer keys, column layer keys): the feature side's blocks."""
        out = []
        for pair in self.pairs:
            rows, cols = self.block_ranges(pair)
            out.append((tuple(self.rows[r].key for r in rows), tuple(self.cols[c].key for c in cols)))
        return out

    def upper_only(self, pair: tuple[int, int]) -> bool:
        """A block whose rows and columns are the same layers: a symmetric metric needs j ≥ i."""
        rows, cols = self.block_ranges(pair)
        return [self.rows[r].key for r in rows] == [self.cols[c].key for c in cols]

    def cells(self, symmetric: bool) -> list[Cell]:
        """Every cell the requested blocks need, row-major (mirrored cells of symmetric metrics
        within a self block excluded)."""
        out: set[Cell] = set()
        for pair in self.pairs:
            rows, cols = self.block_ranges(pair)
            upper = symmetric and self.upper_only(pair)
            out.update((rows[a], cols[b]) for a, b in matrix_cells(len(rows), len(cols), upper))
        return sorted(out)

    def mirrored_notes(self, symmetric: bool, notes: dict[Cell, str]) -> dict[Cell, str]:
        """The notes of the mirrored cells of symmetric self blocks (see :meth:`mirror`)."""
        out: dict[Cell, str] = {}
        if not symmetric:
            return out
        for pair in self.pairs:
            if not self.upper_only(pair):
                continue
            rows, cols = self.block_ranges(pair)
            for a in range(len(rows)):
                for b in range(a):
                    note = notes.get((rows[b], cols[a]))
                    if note is not None:
                        out[(rows[a], cols[b])] = note
        return out

    def mirror(self, symmetric: bool, *arrays: NDArray[Any] | None) -> None:
        """Fill the lower triangle of each symmetric self block from its upper triangle."""
        if not symmetric:
            return
        for pair in self.pairs:
            if not self.upper_only(pair):
                continue
            rows, cols = self.block_ranges(pair)
            for arr in arrays:
                if arr is None:
                    continue
                for a in range(len(rows)):
                    for b in range(a):
                        arr[rows[a], cols[b]] = arr[rows[b], cols[a]]


@dataclass
class Comparison:
    """A prepared comparison: models, their layers' refs, metrics, the engine plan and the states.

    ``counts`` tells how often each per-layer stage ran (engine statistics, shared intermediates
    and metric states), so tests can check that no layer is prepared twice.
    """

    models: list[Model]
    layout: Layout
    specs: list[MetricSpec]
    plan: Plan
    engine: GramEngine
    attrs: dict[str, Any]
    states: StateStore = field(default_factory=lambda: StateStore(0))
    shared: SharedCache = field(default_factory=SharedCache)
    # A shared, content-addressed state directory (``--state-dir``), looked up first.
    state_dir: Any = None
    # per-cell uncertainty (bootstrap, jackknife, permutations): repsim_cli.stats
    statistics: CellStatistics | None = None
    # what a metric's ``pair_row`` keeps between its calls in one run (emptied per metric)
    row_scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def refs_a(self) -> list[LayerRef]:
        return self.layout.rows

    @property
    def refs_b(self) -> list[LayerRef]:
        return self.layout.cols

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter(self.engine.counts)
        total.update(self.shared.counts)
        total.update(self.states.counts)
        return total

    def journal_header(self, shard: Shard | None) -> dict[str, Any]:
        """What a resume journal must match: stores, layers, metrics with parameters, shard."""
        header: dict[str, Any] = {
            "stores": list(self.attrs["stores"]), "fingerprints": list(self.attrs["fingerprints"]),
            "models": list(self.attrs["models"]), "pairs": [list(p) for p in self.layout.pairs],
            "layers_a": [r.name for r in self.refs_a], "layers_b": [r.name for r in self.refs_b],
            "metrics": [[s.text, s.params] for s in self.specs], "shard": str(shard) if shard else None,
            "compute_dtype": self.plan.compute_dtype, "side": self.plan.side,
        }  # fmt: skip
        if self.statistics is not None:
            header["statistics"] = self.statistics.options.to_dict()
        normalised: dict[str, Any] = json.loads(json.dumps(header, sort_keys=True))
        return normalised

    def work(self) -> dict[str, Any]:
        """The run's work, separately for the layer states and the pairs, per metric: states
        (count, declared bytes, flops) and pair cells (count, flops)."""
        out: dict[str, Any] = {}
        n = self.plan.n
        for spec in self.specs:
            info = spec.info
            cells = self.layout.cells(info.symmetric)
            layers = {self.refs_a[i].key: self.refs_a[i] for i, _ in cells}
            layers.update({self.refs_b[j].key: self.refs_b[j] for _, j in cells})
            costs = [info.state_cost(n, r.width, self.plan.state_side(spec.text, r.key) or self.plan.side,
                                     spec.params) for r in layers.values()]  # fmt: skip
            pair_flops = info.cost(n, 0, len(cells), spec.params) if info.cost is not None else 0.0
            if spec.text in self.plan.routes:  # the chosen side's pair work
                pair_flops = self.plan.routes[spec.text].pair_flops
            out[spec.text] = {
                "states": len(layers), "state_key": repr(info.key_of(spec.params)),
                "state_bytes": float(sum(c.bytes for c in costs)),
                "state_flops": float(sum(c.flops for c in costs)),
                "cells": len(cells), "pair_flops": float(pair_flops),
            }  # fmt: skip
        return out

    def describe(self) -> str:
        """What ``compare --dry-run`` prints: models and blocks, the engine plan, then per metric
        the layer states (count, bytes, flops) and the pair work, separately."""
        from ._units import format_size

        names = self.attrs["models"]
        lines = [
            f"models: {len(names)} ({', '.join(names)}); blocks: "
            + ", ".join(f"{names[i]}×{names[j]}" for i, j in self.layout.pairs),
            self.plan.describe(),
            "layer states (prepared once per layer per run, shared by every pair):",
        ]
        work = self.work()
        for spec, w in work.items():
            lines.append(f"  {spec}: {w['states']} states {w['state_key']}, "
                         f"{format_size(int(w['state_bytes']))}, {w['state_flops']:.3g} flops")  # fmt: skip
        lines.append("pair work:")
        for spec, w in work.items():
            lines.append(f"  {spec}: {w['cells']} cells, about {w['pair_flops']:.3g} flops")
        lines.append(f"states beyond {format_size(self.states.budget)} spill to the cache directory")
        if self.statistics is not None:
            lines += self.statistics.describe()
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """``--dry-run --json``: the engine plan's keys plus ``models``, ``blocks`` and ``work``."""
        return {**self.plan.to_dict(), "models": list(self.attrs["models"]),
                "blocks": [list(p) for p in self.layout.pairs], "work": self.work(),
                "state_budget": self.states.budget,
                **({"statistics": {"options": self.statistics.options.to_dict(),
                                   "plan": self.statistics.describe()}}
                   if self.statistics is not None else {})}  # fmt: skip

    def state(self, spec: MetricSpec, ref: LayerRef) -> Any:
        """The metric's state of one layer: prepared once per run, then kept or spilled."""
        info = spec.info
        side = self.plan.state_side(spec.text, ref.key)
        lookup, keep = (None, None) if self.state_dir is None else self.state_dir.lookup(
            info, spec.params, ref, self.plan, side)
        return self.states.get(
            info.key_of(spec.params), ref.key,
            lambda: info.prepare(LayerContext(self.engine, ref, self.shared,
                                              side), spec.params),
            lookup, keep,
        )

    def prepare_states(self, pending: Sequence[Sequence[Cell]]) -> None:
        """The prepare stage: every layer a pending cell needs gets its state for each metric,
        layer by layer, so that intermediates shared by several metrics' states (a spectrum, an
        RDM, neighbour lists) are held for one layer at a time and then dropped."""
        wanted: dict[str, tuple[LayerRef, list[MetricSpec]]] = {}
        for spec, cells in zip(self.specs, pending, strict=True):
            for i, j in cells:
                for ref in (self.refs_a[i], self.refs_b[j]):
                    entry = wanted.setdefault(ref.key, (ref, []))
                    if spec not in entry[1]:
                        entry[1].append(spec)
        order = {r.key: k for k, r in enumerate(self.engine.refs)}
        for key in sorted(wanted, key=lambda k: order.get(k, 0)):
            ref, specs = wanted[key]
            for spec in specs:
                self.state(spec, ref)
            self.shared.drop_layer(key)

    def _identical(self, spec: MetricSpec, i: int, j: int) -> bool:
        """Is cell (i, j) a layer with itself whose value the metric knows exactly?"""
        return spec.info.identity_exact and self.refs_a[i].key == self.refs_b[j].key

    def blocks_of(self, spec: MetricSpec, pending: Sequence[Cell]) -> list[tuple[list[int], list[int]]]:
        """The (rows, cols) blocks the metric's pending cells are computed in: a batched metric's
        covering blocks; for a metric with ``pair_row``, row groups fixed by the layout
        (:func:`row_groups`; exact identities on their own); one row at a time otherwise."""
        info = spec.info
        if info.pair_row is None:
            return covering_blocks(pending, by_row=not info.batched)
        layout = self.layout.cells(info.symmetric)
        same = [(i, j) for i, j in layout if self._identical(spec, i, j)]
        col_bytes = [8.0 * self.plan.n * r.width for r in self.refs_b]
        identities = [([i], [j]) for i, j in sorted(set(same) & set(pending))]
        return row_groups(layout, pending, col_bytes, same) + identities

    def _block(self, spec: MetricSpec, rows: list[int], cols: list[int], wanted: set[Cell]) -> CellBlock:
        """Cells of one (rows × cols) block: the metric's batched ``block`` when it has one; its
        ``pair_row`` over a one-row group (every cell of the group, wanted or not: the group is
        what fixes the bits); else one ``pair`` call per wanted cell (a layer with itself gets
        the identity when it is exact).

        On the per-pair path only the two states of the cell in hand are held here; the others stay
        with the state store, in memory within its budget or spilled to disk.
        """
        info = spec.info
        if info.block is not None:
            states_a = [self.state(spec, self.refs_a[i]) for i in rows]
            states_b = [self.state(spec, self.refs_b[j]) for j in cols]
            return info.block(states_a, states_b, spec.params)
        out = CellBlock(np.full((len(rows), len(cols)), np.nan))
        if info.pair_row is not None and len(rows) == 1:
            live = [(bj, j) for bj, j in enumerate(cols) if not self._identical(spec, rows[0], j)]
            for bj, j in enumerate(cols):
                if self._identical(spec, rows[0], j):
                    out.value[0, bj] = info.identity
            if live:
                state_a = self.state(spec, self.refs_a[rows[0]])
                states_b = [self.state(spec, self.refs_b[j]) for _, j in live]
                cells = info.pair_row(state_a, states_b, spec.params, self.row_scratch)
                for (bj, _), cell in zip(live, cells, strict=True):
                    _put(out, 0, bj, cell)
            return out
        for bi, i in enumerate(rows):
            state_a = None
            for bj, j in enumerate(cols):
                if (i, j) not in wanted:
                    continue
                if self._identical(spec, i, j):
                    out.value[bi, bj] = info.identity
                    continue
                if state_a is None:
                    state_a = self.state(spec, self.refs_a[i])
                _put(out, bi, bj, info.pair(state_a, self.state(spec, self.refs_b[j]), spec.params))
        return out

    def run(
        self, shard: Shard | None = None, journal: Journal | None = None, resume: bool = False
    ) -> Results:
        """Compute the cells of every metric matrix (all, or shard K/N's share) and return them.

        Each layer's state is prepared once per metric and reused by every pair it enters. With a
        ``journal``, finished cells are appended to it as they complete; with ``resume``, cells it
        already holds (from a killed run of the same comparison) are taken from it instead of
        being recomputed. Cells outside the shard are NaN with ``computed`` False.
        """
        done = journal.load() if journal is not None and resume else {}
        if journal is not None:
            journal.open(resume=bool(done))
        la, lb = len(self.refs_a), len(self.refs_b)
        res = Results([r.name for r in self.refs_a], [r.name for r in self.refs_b], attrs=dict(self.attrs))
        if shard is not None:
            res.attrs["shard"] = str(shard)
        cells_of = [shard_cells(self.layout.cells(s.info.symmetric), shard) for s in self.specs]
        self.prepare_states([
            [c for c in cells if (s_idx, *c) not in done] for s_idx, cells in enumerate(cells_of)
        ])
        for s_idx, spec in enumerate(self.specs):
            symmetric = spec.info.symmetric
            cells = cells_of[s_idx]
            value = np.full((la, lb), np.nan)
            std_error: NDArray[np.float64] | None = None
            computed = np.zeros((la, lb), dtype=bool)
            cell_notes: dict[Cell, str] = {}
            cell_stats: dict[Cell, Any] = {}
            pending = []
            for i, j in cells:
                if (s_idx, i, j) in done:
                    value[i, j], se = done[(s_idx, i, j)]
                    computed[i, j] = True
                    if journal is not None and (s_idx, i, j) in journal.notes:
                        note, cell_stats[(i, j)] = decode_note(journal.notes[(s_idx, i, j)])
                        if note is not None:
                            cell_notes[(i, j)] = note
                    if se is not None:
                        std_error = np.full((la, lb), np.nan) if std_error is None else std_error
                        std_error[i, j] = se
                else:
                    pending.append((i, j))
            wanted = set(pending)
            notes: set[str] = set()
            stats_task, stats_done = f"statistics of {spec.text}", 0
            if self.statistics is not None and pending:
                self.engine.progress(stats_task, 0, len(pending))
            self.row_scratch.clear()
            for rows, cols in self.blocks_of(spec, pending):
                block = self._block(spec, rows, cols, wanted)
                notes |= block.notes
                if block.std_error is not None and std_error is None:
                    std_error = np.full((la, lb), np.nan)
                finished = []
                for bi, i in enumerate(rows):
                    for bj, j in enumerate(cols):
                        if (i, j) not in wanted:
                            continue
                        value[i, j] = block.value[bi, bj]
                        computed[i, j] = True
                        if (bi, bj) in block.cell_notes:
                            cell_notes[(i, j)] = block.cell_notes[(bi, bj)]
                        se = None
                        if block.std_error is not None and std_error is not None:
                            se = float(block.std_error[bi, bj])
                            std_error[i, j] = se
                        finished.append((s_idx, i, j, float(value[i, j]), se, cell_notes.get((i, j))))
                if self.statistics is not None:
                    finished = self._with_statistics(spec, rows, cols, finished, cell_stats)
                    stats_done += len(finished)
                    self.engine.progress(stats_task, stats_done, len(pending))
                if journal is not None:
                    journal.write(finished)
            warn_notes(spec.name, notes)
            stats_arrays: dict[str, NDArray[np.float64]] = {}
            if self.statistics is not None:
                std_error = fill_statistics(cell_stats, value.shape, std_error, stats_arrays)
                self.layout.mirror(symmetric, *stats_arrays.values())
            self.layout.mirror(symmetric, value, std_error)
            self.layout.mirror(symmetric, computed)
            cell_notes.update(self.layout.mirrored_notes(symmetric, cell_notes))
            res.metrics[spec.text] = MetricResult(
                spec=spec.text, name=spec.name, kind=spec.info.kind, symmetric=symmetric,
                params=dict(spec.params), value=value, std_error=std_error,
                computed=None if computed.all() else computed, notes=cell_notes, stats=stats_arrays,
            )  # fmt: skip
            if self.statistics is not None:
                from .stats.runner import result_labels

                self.statistics.finish(spec, res.metrics[spec.text], result_labels(res),
                                       {c: r.dominated for c, r in cell_stats.items()})  # fmt: skip
        self.row_scratch.clear()
        if self.statistics is not None:
            res.attrs["statistics"] = self.statistics.options.to_dict()
        return res

    def _with_statistics(self, spec: MetricSpec, rows: list[int], cols: list[int],
                         finished: list[Any], cell_stats: dict[Cell, Any]) -> list[Any]:
        """The statistics of a block's finished cells (kept in ``cell_stats``), carried in the
        journal lines' note field so a resumed run takes them back."""
        assert self.statistics is not None
        wanted = [(i, j) for _, i, j, *_ in finished]
        values = {(i, j): v for _, i, j, v, *_ in finished}
        computed = self.statistics.cells(spec, rows, cols, wanted, values)
        cell_stats.update(computed)
        return [(s, i, j, v, se if computed[(i, j)].std_error is None else computed[(i, j)].std_error,
                 encode_note(note, computed[(i, j)])) for s, i, j, v, se, note in finished]  # fmt: skip

    def close(self, keep_cache: bool = False) -> None:
        """Release the engine's statistics and the states, and remove their disk caches."""
        self.engine.close(keep_cache)
        self.states.close(keep_cache)


def _put(out: CellBlock, bi: int, bj: int, cell: MetricCell) -> None:
    """One computed cell into a block: its value, standard error and note."""
    out.value[bi, bj] = cell.value
    if cell.std_error is not None:
        if out.std_error is None:
            out.std_error = np.full(out.value.shape, np.nan)
        out.std_error[bi, bj] = cell.std_error
    if cell.note:
        out.notes.add(cell.note)
        out.cell_notes[(bi, bj)] = cell.note


def fill_statistics(cell_stats: dict[Cell, Any], shape: tuple[int, ...], std_error: NDArray[np.float64] | None,
                    arrays: dict[str, NDArray[np.float64]]) -> NDArray[np.float64] | None:
    """Lay the cells' statistics out as (La, Lb) arrays (into ``arrays``); returns the std_error
    array with the statistics' standard errors filled in."""
    for (i, j), r in cell_stats.items():
        if r is None:
            continue
        for k, v in r.stats.items():
            arrays.setdefault(k, np.full(shape, np.nan))[i, j] = v
        if r.std_error is not None:
            std_error = np.full(shape, np.nan) if std_error is None else std_error
            std_error[i, j] = r.std_error
    return std_error


def reserved_bytes(specs: Sequence[MetricSpec], refs: Sequence[LayerRef], n: int) -> tuple[int, int]:
    """Memory the metrics need beside the engine: (the largest working set of one layer's prepare
    stage — layers are prepared one at a time —, room for two states of every metric — the pair in
    hand; the state store spills the others when they do not fit)."""
    if not refs:
        return 0, 0
    working = max((s.info.prepare_grams for s in specs), default=0.0) * n * n * 8
    states = sum(
        2 * max(s.info.state_cost(n, r.width, "sample", s.params).bytes for r in refs) for s in specs
    )
    return int(working), int(states)


def _layer_key(index: int) -> str:
    """Key prefix of a model's layers: a, b, c, ... (m26, m27, ... past z)."""
    return chr(ord("a") + index) if index < 26 else f"m{index}"


def prepare_models(
    models: Sequence[tuple[str, ActivationStore]],
    metrics: Sequence[str | MetricSpec],
    *,
    layers: Sequence[Sequence[str] | None] | None = None,
    pairs: str = "all",
    within: bool = False,
    memory: int | None = None,
    precision: str | None = None,
    side: str = "auto",
    progress: ProgressFn = no_progress,
    block_rows: int | None = None,
    cache_dir: str | Path | None = None,
    model_pairs_override: Sequence[tuple[int, int]] | None = None,
    command: str = "",
    statistics: StatsOptions | None = None,
) -> Comparison:
    """Validate N named stores and plan their comparison (nothing heavy is computed yet).

    ``layers``: per model, the layer globs to use (None: all). ``pairs``/``within``: which model
    pairs (:func:`model_pairs`). Every layer of every store enters the engine once, however many
    pairs it is part of. ``block_rows`` overrides the feature side's rows per block (tests use it to
    vary chunking); ``cache_dir`` is where Grams and states spill when they exceed ``memory``;
    ``command`` is recorded in the results' provenance (the CLI passes its command line);
    ``statistics``: per-cell uncertainty (:mod:`repsim_cli.stats`; its kernel path asks the
    engine to hold whole Grams).
    """
    if not models:
        raise RepsimError("compare needs at least one store")
    names = [name for name, _ in models]
    dup = next((nm for nm in names if names.count(nm) > 1), None)
    if dup is not None:
        raise RepsimError(f"two stores are both named {dup!r}; name them NAME=PATH")
    specs = [m if isinstance(m, MetricSpec) else parse_spec(m) for m in metrics]
    stores = [store for _, store in models]
    for store in stores[1:]:
        check_aligned(stores[0], store)
    globs = list(layers) if layers is not None else [None] * len(models)
    chosen = [Model(name, store, select_layers(store, g)) for (name, store), g in zip(models, globs, strict=True)]
    paths = [Path(store.path).resolve() for store in stores]
    owner = [paths.index(p) for p in paths]  # a store given twice shares its layers' states
    refs = [
        [LayerRef(f"{_layer_key(owner[m])}:{name}", model.store, name) for name in model.layers]
        for m, model in enumerate(chosen)
    ]
    pair_list = list(model_pairs_override) if model_pairs_override is not None else model_pairs(
        len(models), pairs, within)
    if len(pair_list) == 1:
        i, j = pair_list[0]
        layout = Layout(refs[i], refs[j], [i] * len(refs[i]), [j] * len(refs[j]), pair_list)
    else:
        flat = [r for model_refs in refs for r in model_refs]
        owners = [m for m, model_refs in enumerate(refs) for _ in model_refs]
        layout = Layout(flat, flat, owners, owners, pair_list)
    used = {r.key for c in (layout.rows, layout.cols) for r in c}
    unique = [r for r in dict.fromkeys(r for model_refs in refs for r in model_refs) if r.key in used]
    unique = list({r.key: r for r in unique}.values())
    costs = [
        LayerCost(r.key, f"{Path(r.store.path).name}:{r.name}", r.width,
                  r.store.info(r.name).dtype.itemsize, r.store.has_stats(r.name),
                  r.store.info(r.name).chunk_rows * r.width * r.store.info(r.name).dtype.itemsize)
        for r in unique
    ]  # fmt: skip
    allowed: set[Side] = {"sample", "feature"}
    for spec in specs:
        allowed &= set(spec.info.sides)
    n_pairs = len(layout.cells(symmetric=True))
    n = stores[0].n_samples
    metric_flops = {
        s.text: s.info.cost(n, len(unique), n_pairs, s.params) for s in specs if s.info.cost is not None
    }
    reserved = reserved_bytes(specs, unique, n)
    if precision is None and any(s.info.prefers_float64 for s in specs):
        precision = "float64"
    plan = make_plan(
        n, costs, n_pairs=n_pairs, budget=memory, precision=precision, side=side,
        sides_allowed=tuple(s for s in ("sample", "feature") if s in allowed) or ("sample",),
        block_rows=block_rows, metric_flops=metric_flops,
        full_gram=any(s.info.needs_gram and not s.info.inner_products_only for s in specs),
        reserved_bytes=sum(reserved),
        min_grams=2 if any(s.info.inner_products_only for s in specs) else 1,
        engine_work=any(s.info.needs_gram for s in specs),
        demands=metric_demands(
            specs, {s.text: [(layout.rows[i], layout.cols[j]) for i, j in layout.cells(s.info.symmetric)]
                    for s in specs}, n, {c.key: c.itemsize for c in costs}),
        feature_blocks=layout.feature_blocks(),
    )  # fmt: skip
    store_paths = [str(store.path) for store in stores]
    fingerprints = [store.fingerprint() for store in stores]
    first_a, first_b = layout.pairs[0]
    attrs = {
        "store_a": store_paths[first_a], "store_b": store_paths[first_b],
        "fingerprint_a": fingerprints[first_a], "fingerprint_b": fingerprints[first_b],
        "models": names, "stores": store_paths, "fingerprints": fingerprints,
        "row_models": list(layout.row_models), "col_models": list(layout.col_models),
        "model_pairs": [list(p) for p in layout.pairs],
        "n_samples": n, "side": plan.side, "compute_dtype": plan.compute_dtype,
        "command": command,
        "versions": {"repsim": __version__, "numpy": np.__version__},
    }  # fmt: skip
    engine = GramEngine(unique, plan, progress, cache_dir=cache_dir)
    # the states' reserved room plus whatever the plan leaves
    state_budget = max(0, plan.budget - plan.peak_bytes) + reserved[1]
    comparison = Comparison(chosen, layout, specs, plan, engine, attrs, StateStore(state_budget, cache_dir))
    if statistics is not None and statistics.active:
        from .stats.runner import attach_statistics  # the statistics' code: only when asked for

        attach_statistics(comparison, statistics)
    return comparison


def prepare_comparison(
    store_a: ActivationStore,
    store_b: ActivationStore | None,
    metrics: Sequence[str | MetricSpec],
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    **options: Any,
) -> Comparison:
    """Two stores (or one store with itself): :func:`prepare_models` with one model pair.

    Layers of B default to ``layers_a`` when ``store_b`` is None, else to all of B's layers.
    """
    globs_b = layers_b if layers_b is not None or store_b is not None else layers_a
    b = store_a if store_b is None else store_b
    same_store = Path(b.path).resolve() == Path(store_a.path).resolve()
    if same_store and select_layers(store_a, layers_a) == select_layers(b, globs_b):
        return prepare_models([(Path(store_a.path).stem, store_a)], metrics, layers=[layers_a], **options)
    name_a, name_b = Path(store_a.path).stem, Path(b.path).stem
    if name_a == name_b:
        name_a, name_b = str(store_a.path), str(b.path)
    if name_a == name_b:
        name_b += "#2"
    return prepare_models([(name_a, store_a), (name_b, b)], metrics, layers=[layers_a, globs_b],
                          model_pairs_override=[(0, 1)], **options)  # fmt: skip


@dataclass(frozen=True)
class CompareOptions:
    """How a comparison runs (the options of ``repsim compare`` that change neither the stores nor
    the metrics). ``memory``: bytes (None: half the RAM); ``precision``: GEMM dtype (None: by the
    stores' dtype); ``side``: ``auto``, ``sample`` or ``feature``; ``pairs``/``within``: which model
    pairs; ``block_rows``: feature-side rows per block (None: planned); ``cache_dir``: where Grams
    and states spill; ``command``: recorded in the results' provenance."""

    memory: int | None = None
    precision: str | None = None
    side: str = "auto"
    pairs: str = "all"
    within: bool = False
    block_rows: int | None = None
    cache_dir: str | Path | None = None
    command: str = ""
    statistics: StatsOptions | None = None  # per-cell uncertainty (repsim_cli.stats)


def compare_models(
    stores: Sequence[str | Path | tuple[str, str | Path]],
    metrics: Sequence[str | MetricSpec],
    *,
    layers: Sequence[str] | None = None,
    options: CompareOptions | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    shard: Shard | None = None,
    progress: ProgressFn = no_progress,
    **overrides: Any,
) -> Results:
    """Compare N stores (paths, or ``(name, path)``) with every metric, as ``repsim compare`` does.

    ``layers``: globs selecting the layers of every store (None: all). ``options``: a
    :class:`CompareOptions` (keyword ``overrides`` replace its fields, e.g. ``pairs="first"``).
    With ``out``, the results are written there (``.h5``/``.zarr``/``.csv``) with a resume journal
    beside it; ``resume=True`` continues a killed run of the same comparison. Returns the results
    (one block per model pair; see :class:`~repsim_cli.results.Results`).
    """
    from .results import write_results

    opts = replace(options or CompareOptions(), **overrides)
    named = [(s if isinstance(s, tuple) else (None, s)) for s in stores]
    paths = [str(p) for _, p in named]
    with ExitStack() as stack:
        opened = [
            (name or default_model_name(str(path), paths), stack.enter_context(open_store(path)))
            for name, path in named
        ]  # fmt: skip
        comparison = prepare_models(
            opened, metrics, layers=[layers] * len(opened), pairs=opts.pairs, within=opts.within,
            memory=opts.memory, precision=opts.precision, side=opts.side, progress=progress,
            block_rows=opts.block_rows, cache_dir=opts.cache_dir, command=opts.command,
            statistics=opts.statistics,
        )  # fmt: skip
        stack.callback(comparison.close)
        journal = None
        if out is not None:
            journal = Journal(journal_path(out), comparison.journal_header(shard))
        try:
            results = comparison.run(shard=shard, journal=journal, resume=resume)
        finally:
            if journal is not None:
                journal.close(remove=False)
    if out is not None:
        write_results(results, out)
        assert journal is not None
        journal.close(remove=True)
    return results


def journal_path(out: str | Path) -> Path:
    """The resume journal of an output: a hidden sibling, ``.NAME.resume``."""
    p = Path(out)
    return p.with_name(f".{p.name}.resume")


def compare_stores(
    path_a: str | Path,
    path_b: str | Path | None,
    metrics: Sequence[str | MetricSpec],
    **options: Any,
) -> Results:
    """Compare the layers of two stores (or one store with itself) with every metric.

    ``options`` are those of :func:`prepare_comparison` (layers_a, layers_b, memory, precision,
    side, progress, block_rows) plus ``shard`` (a :class:`~repsim_cli.schedule.Shard`). Returns a :class:`~repsim_cli.results.Results` with one (La, Lb) matrix per
    metric; cell (i, j) compares layer i of A with layer j of B.
    """
    with ExitStack() as stack:
        a = stack.enter_context(open_store(path_a))
        b = stack.enter_context(open_store(path_b)) if path_b is not None else None
        shard = options.pop("shard", None)
        comparison = prepare_comparison(a, b, metrics, **options)
        try:
            return comparison.run(shard=shard)
        finally:
            comparison.close()
