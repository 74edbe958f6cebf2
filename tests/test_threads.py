"""``--threads`` caps every BLAS pool, including SciPy's own, loaded lazily by the metrics."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import json
from threadpoolctl import threadpool_info
from repsim_cli._threads import limit_threads
with limit_threads(1):
    import scipy.linalg  # what a metric does on first use
    pools = [(p["filepath"], p["num_threads"]) for p in threadpool_info()
             if p["user_api"] == "blas"]
print(json.dumps(pools))
"""


def test_every_blas_pool_is_capped() -> None:
    import json

    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    pools = json.loads(out.stdout)
    assert any("scipy" in path for path, _ in pools), pools  # SciPy's own OpenBLAS is covered
    assert all(n == 1 for _, n in pools), pools
