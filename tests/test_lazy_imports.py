"""Start-up: a command imports its own module and the metric families it runs, nothing more; the
lazy registry and command table still hold everything when read as a whole."""

from __future__ import annotations

import json
import subprocess
import sys

from repsim_cli.cli import COMMAND_MODULES, cli
from repsim_cli.metrics import REGISTRY
from repsim_cli.metrics.registry import _ALIASES, FAMILIES, FAMILY_OF


def loaded_after(code: str) -> list[str]:
    """repsim_cli modules imported by a fresh interpreter running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('repsim_cli'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_family_map_names_every_metric_and_alias_with_the_family_that_registers_it():
    assert set(FAMILY_OF) == {*REGISTRY, *_ALIASES}
    assert set(FAMILY_OF.values()) == set(FAMILIES)
    probe = ("import importlib, json, sys\n"
             "from repsim_cli.metrics import registry as r\n"
             "importlib.import_module('repsim_cli.metrics.' + sys.argv[1])\n"
             "print(json.dumps([*dict.keys(r.REGISTRY), *r._ALIASES]))")
    for family in FAMILIES:
        out = subprocess.run([sys.executable, "-c", probe, family], capture_output=True, text=True, check=True)
        registered = json.loads(out.stdout)
        assert sorted(registered) == sorted(n for n, f in FAMILY_OF.items() if f == family), family


def test_the_registry_lists_families_in_order_whatever_was_imported_first():
    first = loaded_after("from repsim_cli.metrics import get_metric; get_metric('bayes_kl')")
    assert "repsim_cli.metrics.readout" in first and "repsim_cli.metrics.cca" not in first
    probe = ("from repsim_cli.metrics import REGISTRY, get_metric; get_metric('bayes_kl'); "
             "print(__import__('json').dumps(list(REGISTRY)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == list(REGISTRY)


def test_a_compare_imports_only_its_command_and_its_metrics_family():
    loaded = loaded_after("import repsim_cli.cli.compare\n"
                          "from repsim_cli.metrics import parse_spec; parse_spec('procrustes')")
    assert "repsim_cli.metrics.procrustes" in loaded
    for other in ("repsim_cli.metrics.readout", "repsim_cli.metrics.neighbors", "repsim_cli.cli.export",
                  "repsim_cli.cli.extract", "repsim_cli.stats.runner", "repsim_cli.merge"):
        assert other not in loaded, other


def test_the_command_table_holds_every_command_and_help_lists_them():
    from click.testing import CliRunner

    assert sorted(cli.commands) == sorted(COMMAND_MODULES)
    assert {name: c.name for name, c in cli.commands.items()} == {n: n for n in COMMAND_MODULES}
    out = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {name}" in out for name in COMMAND_MODULES)
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2


def test_a_jackknife_compare_of_cka_imports_no_scipy():
    """SciPy's import (~0.2 s, more than a small compare) is paid only by what needs it: not by
    the CKA jackknife (BCa intervals import scipy.special when they compute one)."""
    code = ("import sys, numpy as np\n"
            "from repsim_cli.arrays import ArrayStore\n"
            "from repsim_cli.compare import prepare_models\n"
            "from repsim_cli.stats.runner import StatsOptions, attach_statistics\n"
            "rng = np.random.default_rng(0)\n"
            "c = prepare_models([('m', ArrayStore({'a': rng.normal(size=(40, 5)), 'b': rng.normal(size=(40, 5))}))],"
            " ['cka'])\n"
            "attach_statistics(c, StatsOptions(jackknife=True))\n"
            "c.run()\n"
            "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
