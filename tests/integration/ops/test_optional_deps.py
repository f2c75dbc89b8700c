"""Optional roles' dependencies: an agent without the Docker SDK and a master without amqtt still work,
and say what to install; nothing heavy is imported by an agent that does not need it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None  # as if not installed\n"


def _python(code: str, *names: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    script = BLOCK.format(names=names) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def test_an_agent_without_the_docker_sdk_offers_wasm_and_says_why_not_docker(tmp_path: object) -> None:
    r = _python(
        f"""
        import asyncio, json, logging, sys
        from pathlib import Path
        from edgerm.agent.config import AgentConfig
        from edgerm.agent.http_transport import HttpAgentTransport
        from edgerm.agent.main import build_runtimes
        from edgerm.ids import AgentId
        logging.basicConfig(level=logging.INFO)

        async def main():
            rts = await build_runtimes(AgentConfig(), AgentId("a1"), Path({str(tmp_path)!r}), HttpAgentTransport("http://127.0.0.1:9"))
            print(json.dumps(sorted(rts)))
            for rt in rts.values():
                await rt.close()

        asyncio.run(main())
        """,
        "docker",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == ["wasm"]
    assert "the Docker SDK is not installed (pip install 'edgerm[docker]')" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_master_without_amqtt_runs_without_a_broker_and_says_so() -> None:
    code = """
        import sys
        from edgerm.master.main import main
        sys.exit(main(sys.argv[1:]))
    """
    script = BLOCK.format(names=("amqtt",)) + textwrap.dedent(code)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "--port", "0", "--no-coap", "--insecure", "--state-dir", ":memory:"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("edgerm-master listening on http://")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "no embedded MQTT broker: amqtt is not installed (pip install 'edgerm[broker]')" in err
    # Asked for by port, it refuses in one line rather than run without what was asked.
    refused = _python(
        "from edgerm.master.main import main\n"
        "sys.exit(main(['--port', '0', '--no-coap', '--broker-port', '0', '--insecure', '--state-dir', ':memory:']))",
        "amqtt",
    )
    assert refused.returncode == 2 and "pip install 'edgerm[broker]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_wasm_only_http_agent_imports_neither_docker_nor_aiocoap_nor_amqtt(tmp_path: object) -> None:
    r = _python(
        f"""
        import asyncio, sys
        from pathlib import Path
        from edgerm.agent.config import AgentConfig
        from edgerm.agent.http_transport import HttpAgentTransport
        from edgerm.agent.main import build_runtimes
        from edgerm.ids import AgentId

        async def main():
            cfg = AgentConfig(executors=frozenset({{"wasm"}}))
            rts = await build_runtimes(cfg, AgentId("a1"), Path({str(tmp_path)!r}), HttpAgentTransport("http://127.0.0.1:9"))
            for rt in rts.values():
                await rt.close()
            print(sorted(m for m in ("docker", "aiocoap", "amqtt", "requests") if m in sys.modules))

        asyncio.run(main())
        """,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"


def test_plain_install_metadata_leaves_docker_and_amqtt_to_extras() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "docker" not in core and "amqtt" not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("docker") for d in extras["docker"]) and any(
        d.startswith("amqtt") for d in extras["broker"]
    )
    assert "edgerm[docker,broker]" in extras["dev"]  # CI tests everything
