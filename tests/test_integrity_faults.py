"""Faults: a full disk (on a small tmpfs the test mounts; skipped where mounting is not allowed)
and SIGTERM during ``import``.

Before this work, a full disk during ``import`` ended in an h5py traceback from the abort path,
the partial left by a full disk during ``extract`` was not mentioned, and SIGTERM during ``import``
left a hidden temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (needs root and a kernel that lets this process mount)."""
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or made.returncode}); "
                    "the disk-full paths are not exercised")  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
def test_import_on_a_full_disk_says_so_and_leaves_nothing(small_disk, tmp_path, suffix) -> None:
    np.save(tmp_path / "big.npy", np.random.default_rng(0).random((2000, 300)).astype(np.float32))
    out = small_disk / f"out{suffix}"
    r = run("import", tmp_path / "big.npy", "-o", out)
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {out}: no space left on device while writing it; nothing was written (its temporary "
        "file was removed): free some space and run the command again\n"
    )
    assert listing(small_disk) == []


def test_compare_on_a_full_disk_names_its_journal(small_disk, make_store, tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = make_store({f"l{i}": rng.standard_normal((50, 4)) for i in range(3)})
    with open(small_disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:  # until the file system is full
            fh.write(b"\0" * 4096)
    out = small_disk / "out.csv"
    r = run("compare", path, "-m", "cka", "-o", out)
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {small_disk / '.out.csv.resume'}: no space left on device for the resume journal; "
        "nothing was kept: free some space and run the command again\n"
    )
    assert listing(small_disk) == ["filler"]


def test_compare_whose_output_does_not_fit_keeps_its_journal(small_disk, make_store, tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = make_store({f"l{i}": rng.standard_normal((30, 3)) for i in range(40)})
    journal = small_disk / ".out.h5.resume"
    with open(small_disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    os.truncate(small_disk / "filler", (small_disk / "filler").stat().st_size - 48 * 1024)
    out = small_disk / "out.h5"
    # In a process of its own: HDF5 may not recover from a file whose close failed for lack of
    # space (the command ends right after; a later h5py call in the same process can crash).
    r = subprocess.run([sys.executable, "-m", "repsim_cli", "compare", str(path), "-m", "cka", "-o", str(out), "-q"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr == (
        f"Error: {out}: no space left on device while writing it (nothing of it was left); the resume "
        f"journal {journal} keeps every computed cell: free some space and run the same command with "
        "--resume to write the output from it, or delete the journal\n"
    )
    assert listing(small_disk) == [".out.h5.resume", "filler"]
    (small_disk / "filler").unlink()
    r = run("compare", path, "-m", "cka", "-o", out, "-q", "--resume")
    assert r.exit_code == 0, r.output
    assert listing(small_disk) == ["out.h5"]


def test_extract_on_a_full_disk_names_the_partial_it_keeps(small_disk, tmp_path) -> None:
    pytest.importorskip("torch")
    from repsim_cli.store.streaming import partial_path

    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def wide():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(8, 512), nn.Tanh())
    """))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((1024, 8)).astype(np.float32))
    out = small_disk / "acts.h5"
    r = run("extract", "--model", f"{tmp_path / 'model.py'}:wide", "--inputs", tmp_path / "x.npy",
            "--layers", "0", "--batch-size", "16", "-q", "-o", out)  # fmt: skip
    assert r.exit_code == 1, r.output
    partial = partial_path(out)
    if partial.exists():
        assert r.output.startswith(f"Error: {out}: no space left on device; the partial store {partial} keeps the first ")
        assert "free some space and run the same command with --resume, or delete it" in r.output
    else:
        assert r.output.startswith(f"Error: {out}: no space left on device; nothing was kept")
    assert "Traceback" not in r.output


SLOW_IMPORT = textwrap.dedent("""
    import sys, time
    from repsim_cli.store import base

    original = base.StoreWriter.write_rows

    def slow(self, name, start, block):
        print("row", start, flush=True)
        time.sleep(30)  # SIGTERM lands here (the import would otherwise finish first)
        return original(self, name, start, block)

    base.StoreWriter.write_rows = slow
    from repsim_cli.cli import main
    main(sys.argv[1:])
""")


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
def test_sigterm_during_import_leaves_no_temporary_file(tmp_path, suffix) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", np.random.default_rng(0).random((400, 8)))
    script = tmp_path / "slow_import.py"
    script.write_text(SLOW_IMPORT)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"a{suffix}"
    proc = subprocess.Popen([sys.executable, str(script), "import", f"a={src / 'a.npy'}", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not proc.stdout.readline().startswith(b"row"):
        assert proc.poll() is None, proc.communicate()[1].decode()
    assert [p for p in out_dir.iterdir() if p.name.startswith(".a.tmp-")]  # it is writing now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err.decode()
    assert "Traceback" not in err.decode(), err.decode()
    assert listing(out_dir) == [], (proc.returncode, err.decode())  # neither the temporary store nor the lock
    assert os.listdir(src) == ["a.npy"]
