"""compare's statistics, second round (repsim_cli.stats): the packed jackknife, batched
permutations, the kernels' memory, duplicates on the generic path, dcor's jackknife."""

from __future__ import annotations

import warnings

import numpy as np

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import ArrayStore
from repsim_cli.compare import prepare_models
from repsim_cli.engine.triangles import triangle_offsets
from repsim_cli.stats.jackknife import double_centre
from repsim_cli.stats.packed import centred_rowdots
from repsim_cli.stats.runner import StatsOptions, attach_statistics


def run_with(layers: dict[str, np.ndarray], metric: str, opts: StatsOptions, **kw: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        comparison = prepare_models([("m", ArrayStore(layers))], [metric], precision="float64", **kw)  # type: ignore[arg-type]
        attach_statistics(comparison, opts)
        try:
            return comparison.run().metrics[metric], comparison
        finally:
            comparison.close()


def test_rowdots_from_packed_triangles_are_the_dense_ones() -> None:
    rng = np.random.default_rng(3)
    n = 203  # several row tiles, the last one short
    mats = []
    for _ in range(3):
        x = rng.normal(size=(n, 9)) + 0.5
        mats.append(x @ x.T)
    off = triangle_offsets(n)
    iu = np.triu_indices(n, 1)

    def reader(m: np.ndarray):
        tri = m[iu]

        def rows(first: int, stop: int, out: np.ndarray) -> None:
            out[:] = tri[off[first] : off[stop]]

        return rows

    pairs = [(0, 0), (0, 1), (2, 1)]
    hs, diags = centred_rowdots([(reader(m), np.diag(m).copy()) for m in mats], pairs, n)
    cent = [double_centre(m) for m in mats]
    for (a, b), h in zip(pairs, hs, strict=True):
        np.testing.assert_allclose(h, np.einsum("ij,ij->i", cent[a], cent[b]), rtol=1e-11, atol=1e-9)
    for d, c in zip(diags, cent, strict=True):
        np.testing.assert_allclose(d, np.diag(c), rtol=1e-12, atol=1e-10)


def test_packed_plan_jackknife_equals_the_whole_kernel_one() -> None:
    """The sample side's packed plan takes the triangle path; its std errors and dominated
    examples are those of the whole-kernel closed form (the feature side builds XcXcᵀ)."""
    rng = np.random.default_rng(5)
    layers = {f"l{i}": rng.normal(size=(150, 20)) + (i + 1) * rng.normal(size=(150, 1)) for i in range(3)}
    opts = StatsOptions(jackknife=True)
    packed, cmp = run_with(layers, "cka", opts, side="sample")
    assert type(cmp.engine._grams).__name__ == "PackedGrams"
    assert cmp.statistics is not None and len(cmp.statistics._packed_loo) == 3  # the triangle path ran
    whole, cmp2 = run_with(layers, "cka", opts, side="feature")
    assert cmp2.statistics is not None and not cmp2.statistics._packed_loo
    assert packed.std_error is not None and whole.std_error is not None
    np.testing.assert_allclose(packed.std_error, whole.std_error, rtol=1e-10)
