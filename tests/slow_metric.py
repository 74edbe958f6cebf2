"""A script that runs the repsim CLI with one extra metric, ``slow_test``, whose pair stage sleeps:
tests that interrupt a comparison (signals, kills, concurrent writers) run it as a subprocess."""

from __future__ import annotations

import textwrap


def slow_compare_script(seconds_per_cell: float, seconds_per_state: float = 0.0) -> str:
    """Python source: register ``slow_test`` (asymmetric, feature side; each cell sleeps
    ``seconds_per_cell``, each layer's state ``seconds_per_state``), then run ``repsim`` with the
    script's arguments."""
    return textwrap.dedent(f"""
        import sys, time
        from repsim_cli.metrics import register, Cell, MetricInfo, StateCost
        from repsim_cli.metrics.cka import linear_cka

        def prepare(layer, params):
            time.sleep({seconds_per_state!r})
            return layer.centered_covariance()[0].copy()

        def pair(a, b, params):
            time.sleep({seconds_per_cell!r})
            return Cell(float(a[0] * b[0]))

        register(MetricInfo(name="slow_test", kind="similarity", symmetric=False, bounds=(0, 1),
                 params=(), citation="test", summary="test", sides=("feature",),
                 prepare=prepare, pair=pair,
                 state_cost=lambda n, width, side, params: StateCost(8.0 * width, 0.0),
                 identity=1.0, dense=linear_cka))
        from repsim_cli.cli import main
        main(sys.argv[1:])
    """)
