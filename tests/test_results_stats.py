"""Per-cell statistics (interval bounds, p-values, null moments) travel through every results
format: the results store, the long CSV, blocks and merges."""

from __future__ import annotations

import numpy as np
import pytest

from repsim_cli.merge import merge_results
from repsim_cli.results import (
    CSV_COLUMNS,
    STAT_FIELDS,
    MetricResult,
    Results,
    csv_text,
    read_results,
    write_results,
)


def _results(rng: np.random.Generator, computed: np.ndarray | None = None) -> Results:
    value = rng.random((3, 2))
    stats = {k: rng.random((3, 2)) for k in STAT_FIELDS}
    stats["p_adjusted"][1, 1] = np.nan  # a statistic missing for one cell stays missing
    res = Results(["l0", "l1", "l2"], ["m0", "m1"], attrs={"store_a": "a.h5", "store_b": "b.h5"})
    res.metrics["cka"] = MetricResult(spec="cka", name="cka", kind="similarity", symmetric=True, params={},
                                      value=value, std_error=rng.random((3, 2)), computed=computed,
                                      stats=stats)  # fmt: skip
    return res


@pytest.mark.parametrize("suffix", [".h5", ".zarr", ".csv"])
def test_statistics_round_trip(tmp_path, suffix) -> None:
    res = _results(np.random.default_rng(0))
    path = tmp_path / f"r{suffix}"
    write_results(res, path)
    back = read_results(path).get("cka")
    for k in STAT_FIELDS:
        np.testing.assert_array_equal(back.stats[k], res.metrics["cka"].stats[k])


def test_csv_has_statistic_columns_only_when_computed() -> None:
    res = _results(np.random.default_rng(1))
    header, first, *_ = csv_text(res).splitlines()
    assert tuple(header.split(",")) == CSV_COLUMNS
    assert len(first.split(",")) == len(CSV_COLUMNS)
    res.metrics["cka"].stats.clear()
    assert "ci_low" not in csv_text(res).splitlines()[0]


def test_statistics_follow_blocks_and_merges(tmp_path) -> None:
    rng = np.random.default_rng(2)
    full = _results(rng)
    part_a = _results(rng, computed=np.array([[1, 1], [1, 0], [0, 0]], dtype=bool))
    part_b = _results(rng, computed=~part_a.metrics["cka"].computed)  # type: ignore[operator]
    for part in (part_a, part_b):  # each shard holds its own cells of the same full result
        m = part.metrics["cka"]
        m.value[...] = full.metrics["cka"].value
        for k in STAT_FIELDS:
            m.stats[k][...] = np.where(m.computed, full.metrics["cka"].stats[k], np.nan)  # type: ignore[arg-type]
    write_results(part_a, tmp_path / "a.h5")
    write_results(part_b, tmp_path / "b.h5")
    merged = merge_results([tmp_path / "a.h5", tmp_path / "b.h5"]).get("cka")
    for k in STAT_FIELDS:
        np.testing.assert_array_equal(merged.stats[k], full.metrics["cka"].stats[k])
    blk = full.cropped().get("cka")
    np.testing.assert_array_equal(blk.stats["ci_low"], full.metrics["cka"].stats["ci_low"])
