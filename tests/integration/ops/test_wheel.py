"""The wheel carries what its commands need: built, installed in a fresh venv outside the repo, run elsewhere:
every console script, the shipped examples, ``python -m edgerm.demo``, and every step of docs/tutorial.md
against a cluster started from the venv's own scripts.

The venv gets edgerm from the wheel only (``pip install --no-deps --no-index``); its dependencies come from
this interpreter's site-packages through a ``.pth`` line (offline, and fast), which adds that directory
to ``sys.path`` without running its ``.pth`` files, so the editable install of the checkout is NOT visible:
the test checks that ``edgerm`` is imported from the new venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.docs.blocks import blocks, sessions
from tests.docs.cluster import start_cluster
from tests.docs.runner import run_blocks

REPO = Path(__file__).resolve().parents[3]


def _run(argv: list[str], cwd: Path, timeout: float = 120.0, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{argv}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_demo_the_examples_and_the_tutorial_from_any_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], tmp_path, 300)
    [wheel] = dist.glob("edgerm-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "_edgerm_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
    )
    anywhere = tmp_path / "elsewhere"
    anywhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGERM_", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = _run([str(py), "-c", "import edgerm; print(edgerm.__file__)"], anywhere, env=env)
    assert where.startswith(str(venv)), where
    for script in ("edgerm-master", "edgerm-agent", "edgerm", "edgerm-dataflow"):
        assert _run([str(venv / "bin" / script), "--version"], anywhere, env=env).startswith(script)
    listed = _run([str(py), "-c", "from edgerm import examples; print(examples.names())"], anywhere, env=env)
    assert "dataflows/temperature.yaml" in listed and "wasm/hello.wat" in listed
    dag = _run(
        [str(py), "-c", "from edgerm import examples; print(examples.path('dataflows/temperature.yaml'))"],
        anywhere,
        env=env,
    )
    assert "valid DAG" in _run([str(venv / "bin" / "edgerm-dataflow"), "validate", dag.strip()], anywhere, env=env)
    out = _run([str(py), "-m", "edgerm.demo", "--seconds", "8"], anywhere, timeout=180, env=env)
    assert "demo finished: the pipeline ran and was torn down" in out, out[-3000:]
    # The tutorial, as a user of the wheel runs it: a cluster and every step from the venv's scripts.
    tutorial = REPO / "docs" / "tutorial.md"
    cluster = start_cluster(tmp_path / "cluster", bin_dir=venv / "bin")
    try:
        for name, bs in sessions(blocks(tutorial)).items():
            run_blocks(bs, cluster, tmp_path / f"tutorial-{name}", bin_dir=venv / "bin")
    finally:
        cluster.stop()
