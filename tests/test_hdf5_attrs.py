"""HDF5 attributes are native (strings, numbers, booleans, string arrays), round-trip through both
backends, and files whose attributes are JSON text after a prefix (earlier versions) still read."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from repsim_cli.results import read_results, write_results
from repsim_cli.store import open_store
from repsim_cli.store._container import JSON_PREFIX, open_container

VALUES: dict[str, Any] = {
    "text": "héllo",
    "empty_text": "",
    "prefixed_text": "json:not json",  # a string that looks like the old encoding
    "yes": True,
    "no": False,
    "count": 3,
    "negative": -(2**62),
    "huge": 2**70,  # beyond int64: JSON text
    "ratio": 0.25,
    "nan": math.nan,
    "names": ["a", "bé", ""],
    "one_name": ["only"],
    "empty": [],
    "flags": [True, False],
    "ints": [1, 2, 3],
    "floats": [0.5, 1.5],
    "pairs": [[0, 1], [1, 2]],
    "name_grid": [["a", "b"], ["c", "d"]],
    "mixed": [1, 2.5],  # mixed kinds: JSON text keeps each element's type
    "ragged": [[0], [1, 2]],
    "with_none": ["a", None],
    "mapping": {"repsim": "1.0", "nested": {"k": [1, 2]}},
    "none": None,
    "numpy": np.arange(3, dtype=np.int32),
    "numpy_scalar": np.float32(0.5),
    "tuple": (4, 5),
}


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    return type(got) is type(want) and got == want


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_every_attribute_type_round_trips(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"attrs{suffix}"
    with open_container(path, "w") as c:
        c.set_attrs("", VALUES)
        c.set_attrs("group/sub", {"names": ["x", "y"]})
    expected = {k: json.loads(json.dumps(v, default=lambda o: o.tolist())) for k, v in VALUES.items()}
    with open_container(path, "r") as c:
        got = c.get_attrs()
        assert set(got) == set(expected)
        for key, want in expected.items():
            assert _same(got[key], want), (key, got[key], want)
            if isinstance(want, list):
                assert all(_same(g, w) for g, w in zip(got[key], want, strict=True)), key
        assert c.get_attrs("group/sub") == {"names": ["x", "y"]}


def test_h5py_reads_native_types(tmp_path: Path) -> None:
    path = tmp_path / "attrs.h5"
    with open_container(path, "w") as c:
        c.set_attrs("", VALUES)
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["text"] == "héllo" and isinstance(a["text"], str)
        assert a["yes"].dtype == np.bool_ and bool(a["yes"]) and not bool(a["no"])
        assert a["count"].dtype == np.int64 and a["count"] == 3
        assert a["ratio"].dtype == np.float64 and a["ratio"] == 0.25
        names = a["names"]
        assert names.dtype == object and h5py.check_string_dtype(a.get_id("names").dtype) is not None
        assert names.tolist() == ["a", "bé", ""]
        assert a["flags"].dtype == np.bool_ and a["flags"].tolist() == [True, False]
        assert a["pairs"].shape == (2, 2) and a["pairs"].dtype == np.int64
        assert a["floats"].dtype == np.float64
        assert a["empty"].shape == (0,)
        assert a["numpy"].tolist() == [0, 1, 2]
        # no native form: JSON text, said by the prefix
        for key in ("mapping", "none", "mixed", "ragged", "with_none", "huge", "prefixed_text"):
            assert isinstance(a[key], str) and a[key].startswith(JSON_PREFIX), key


def test_store_and_results_attributes_native(tmp_path: Path, make_store: Any) -> None:
    from repsim_cli.compare import compare_stores

    rng = np.random.default_rng(0)
    store = make_store({"l1": rng.standard_normal((12, 3)), "l2": rng.standard_normal((12, 4))})
    with h5py.File(store, "r") as f:
        assert f.attrs["layers"].tolist() == ["l1", "l2"]
    out = tmp_path / "r.h5"
    write_results(compare_stores(store, None, ["cka", "pwcca"]), out)
    with h5py.File(out, "r") as f:
        assert f.attrs["metrics"].tolist() == ["cka", "pwcca"]
        assert f.attrs["models"].tolist() == [store.stem]
        assert f.attrs["n_samples"] == 12 and f.attrs["n_samples"].dtype == np.int64
        assert f["metrics/cka"].attrs["symmetric"].dtype == np.bool_
        assert f["metrics/pwcca"].attrs["params"] == JSON_PREFIX + '{"side": "a"}'
    back = read_results(out)
    assert back.metrics["pwcca"].params == {"side": "a"} and back.metrics["cka"].symmetric is True


def test_old_json_attributes_still_read(tmp_path: Path, make_store: Any) -> None:
    """Rewrite a store's and a results file's list/mapping attributes as earlier versions stored
    them (JSON text after the prefix); both still read the same."""
    from repsim_cli.compare import compare_stores

    rng = np.random.default_rng(1)
    store = make_store({"l1": rng.standard_normal((10, 3)), "l2": rng.standard_normal((10, 2))})
    out = tmp_path / "r.h5"
    write_results(compare_stores(store, None, ["cka", "linreg"]), out)
    new = read_results(out)

    def to_old(obj: Any) -> None:
        for key, value in list(obj.attrs.items()):
            if isinstance(value, np.ndarray):
                obj.attrs[key] = JSON_PREFIX + json.dumps(value.tolist())

    for path in (store, out):
        with h5py.File(path, "r+") as f:
            f.visititems(lambda _, obj: to_old(obj))
            to_old(f)
            assert isinstance(f.attrs["layers" if path == store else "metrics"], str)
    with open_store(store) as s:
        assert list(s.layers) == ["l1", "l2"]
    old = read_results(out)
    assert list(old.metrics) == ["cka", "linreg"] and old.attrs == new.attrs
    for spec in old.metrics:
        np.testing.assert_array_equal(old.metrics[spec].value, new.metrics[spec].value)
