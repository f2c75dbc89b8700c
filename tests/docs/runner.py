"""Running doc blocks: one block or a session as one bash script, against a cluster, leaving nothing behind.

See tests/docs/test_docs_run.py for the rules (where blocks run, what is rewritten, what fails them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import SHELL, Block
from tests.docs.cluster import BIN, DOC_BROKER, DOC_COAP, DOC_MASTER, REPO, DocsCluster, base_env, free_port, run_script

TIMEOUT = 120.0  # a bound for a loaded machine; each script takes a few seconds when it is quiet


def _docker_ready() -> bool:
    try:
        from tests.support import docker_unavailable

        return not docker_unavailable()
    except ImportError:
        return False


def _own_cluster(code: str, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Rewrites and env for a script that starts its own master: fresh ports, private work dirs."""
    url = f"http://127.0.0.1:{free_port()}"
    rewrites = {
        DOC_MASTER: url,
        DOC_COAP: f"coap://127.0.0.1:{free_port(2)}",
        DOC_BROKER: f"mqtt://127.0.0.1:{free_port()}",
        "--port 5050": f"--port {url.rsplit(':', 1)[1]}",
        "/tmp/edgerm-": f"{tmp}/edgerm-",
    }
    rewrites["--coap-port 5683"] = f"--coap-port {rewrites[DOC_COAP].rsplit(':', 1)[1]}"
    rewrites["--broker-port 1883"] = f"--broker-port {rewrites[DOC_BROKER].rsplit(':', 1)[1]}"
    return rewrites, {"EDGERM_MASTER": url}


def _rewrite(code: str, rewrites: dict[str, str]) -> str:
    for old, new in rewrites.items():
        code = code.replace(old, new)
    return code


def run_blocks(
    script_blocks: list[Block],
    cluster: DocsCluster | None,
    tmp: Path,
    vary: tuple[str, str] = ("", ""),
    bin_dir: Path = BIN,
) -> None:
    """Run blocks (one, or a session) as one bash script; fail with the output when it fails or leaks."""
    shell: list[str] = []
    starts_master = any("edgerm-master" in b.code for b in script_blocks)
    if starts_master:
        rewrites, env_extra = _own_cluster("".join(b.code for b in script_blocks), tmp)
    else:
        assert cluster is not None
        rewrites, env_extra = cluster.rewrites, cluster.env
    tmp.mkdir(parents=True, exist_ok=True)
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    for n, b in enumerate(script_blocks):
        if b.attrs.get("requires") == "docker" and not _docker_ready():
            continue
        code = _rewrite(b.code, rewrites)
        if vary[0]:
            code = code.replace(*vary)
        if "file" in b.attrs:
            (work / b.attrs["file"]).write_text(code)
        elif b.lang in SHELL:
            shell.append(f"# --- {b.where}\n{code}")
        elif b.runnable:  # a python block: run it where the shell is
            path = tmp / f"block{n}.py"
            path.write_text(code)
            shell.append(f"# --- {b.where}\n{bin_dir / 'python'} {path}\n")
    script = tmp / "script.sh"
    script.write_text("set -e\n" + "\n".join(shell))
    cwd = REPO if script_blocks[0].path.name == "README.md" else work
    result = run_script(["bash", str(script)], cwd, base_env(env_extra, bin_dir), TIMEOUT, tmp / "output.log")
    where = ", ".join(b.where for b in script_blocks)
    if result.returncode is None:
        pytest.fail(f"{where}: did not finish within {TIMEOUT:g}s; output:\n{result.tail()}")
    if result.returncode != 0:
        pytest.fail(f"{where}: exit status {result.returncode}; output:\n{result.tail()}")
    if result.leftovers:
        pytest.fail(f"{where}: left processes running: {result.leftovers}; output:\n{result.tail()}")
