"""Run every benchmark script in bench/ (bench_*.py) in turn, each in its own process.

Usage: python bench/run_all.py [NAME ...]   (NAME: e.g. cka, bayes, extract; default: all)
Figures are printed to stdout; each script states its workload and the command that produced it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    scripts = sorted(here.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    status = 0
    for script in scripts:
        print(f"\n===== {script.name} =====", flush=True)
        status |= subprocess.call([sys.executable, str(script)])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
