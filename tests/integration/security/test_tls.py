"""TLS end to end with a test CA made here by the ``openssl`` CLI; a wrong certificate is refused.

The CA, the master's certificate (SAN 127.0.0.1) and an agent's client
certificate are made in a temporary directory with the same commands as
docs/security.md. Then: a real agent joins and registers over https, a real
framework driver subscribes, and the CLI reads the state, all verifying the
master against the CA; clients trusting another CA fail the handshake; with
``client_ca`` the master refuses clients without a certificate it signed.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from edgerm import cli
from edgerm.agent.config import AgentConfig
from edgerm.agent.main import start_agent
from edgerm.errors import ConfigError, TransportError
from edgerm.frameworks import Framework
from edgerm.frameworks.driver import FrameworkDriver
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.ids import FrameworkId
from edgerm.master.main import TlsFiles, start_master
from tests.support import admin_headers

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

FAST = AgentConfig(heartbeat_interval=0.1, executors=frozenset({"wasm"}))


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str = "fleet-ca") -> None:
    _openssl(
        d,
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"),
        *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=edgerm {name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE,pathlen:0"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )


def make_cert(d: Path, name: str, usage: str, san: str, ca: str = "fleet-ca") -> None:
    (d / f"{name}.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        d,
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"),
    )
    _openssl(
        d,
        *("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"),
        *("-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem"),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d)
    make_cert(d, "master", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "agent-1", "clientAuth", "DNS:agent-1")
    make_ca(d, "other-ca")
    make_cert(d, "impostor", "serverAuth", "DNS:localhost,IP:127.0.0.1", ca="other-ca")
    return d


class Quiet(Framework):
    name = "tls"

    def __init__(self) -> None:
        self.up = asyncio.Event()

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        self.up.set()


async def test_tls_end_to_end_with_the_fleet_ca(pki: Path, tmp_path: Path) -> None:
    ca = str(pki / "fleet-ca.pem")
    async with start_master(tls=TlsFiles(pki / "master.pem", pki / "master.key")) as master:
        assert master.url.startswith("https://127.0.0.1:")
        async with start_agent(master.url, FAST, tmp_path / "agent", ca=ca):  # joins and registers over TLS
            framework = Quiet()
            driver = HttpDriver(framework, master.url, ca=ca)
            run = asyncio.create_task(driver.run())
            await asyncio.wait_for(framework.up.wait(), 10)
            await driver.stop()
            await run
            state = await asyncio.to_thread(cli.fetch_state, master.url, 5.0, None, ca)
            assert len(state["agents"]) == 1  # type: ignore[arg-type]
        # Plain HTTP to the TLS port gets nothing useful.
        plain = master.url.replace("https://", "http://")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(plain + "/api/v1/state", headers=admin_headers(master.url)) as r:
                    await r.read()


async def test_a_master_with_a_certificate_from_another_ca_is_refused(pki: Path, tmp_path: Path) -> None:
    async with start_master(tls=TlsFiles(pki / "impostor.pem", pki / "impostor.key")) as master:
        with pytest.raises(ConfigError, match="certificate does not verify"):
            await start_agent(master.url, FAST, tmp_path / "agent", ca=str(pki / "fleet-ca.pem"))
        with pytest.raises(cli.StateUnavailable):
            await asyncio.to_thread(cli.fetch_state, master.url, 5.0, None, str(pki / "fleet-ca.pem"))
        assert master.service.core.snapshot()["agents"] == []


async def test_client_certificates_are_required_when_the_master_names_a_client_ca(pki: Path, tmp_path: Path) -> None:
    tls = TlsFiles(pki / "master.pem", pki / "master.key", client_ca=pki / "fleet-ca.pem")
    ca = str(pki / "fleet-ca.pem")
    async with start_master(tls=tls) as master:
        with pytest.raises(TransportError):
            await start_agent(master.url, FAST, tmp_path / "without", ca=ca, register_timeout=2)
        cert, key = str(pki / "agent-1.pem"), str(pki / "agent-1.key")
        async with start_agent(master.url, FAST, tmp_path / "with", ca=ca, tls_cert=cert, tls_key=key):
            assert len(master.service.core.snapshot()["agents"]) == 1  # type: ignore[arg-type]
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(str(pki / "impostor.pem"), str(pki / "impostor.key"))  # signed by another CA
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as r:
                    await r.read()
