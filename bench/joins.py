"""What an agent join costs as the fleet grows: the credential store alone, then a real master over HTTP.

    python bench/joins.py [--sizes 1000,5000,10000,50000] [--baseline-sizes 1000,5000] [--fleet 2000] [--out joins]

1. **Store** (no sockets): a ``CredentialStore`` on disk (a temp dir; ``credentials.yaml`` with an admin and
   a join credential) already holding N joined agents; then ``--samples`` more joins, each timed (p50/p99/max).
   Baseline, measured in the same run for the smaller sizes: the way joins were recorded before 2026-12-03,
   the whole ``credentials.yaml`` read, changed and rewritten under its lock (``credentials.update`` on a file
   holding the N agents: exactly what ``CredentialStore.join`` did), so the ratio is old cost / new cost.
2. **Master** (end to end): a real, secured ``edgerm-master`` (``edgerm-master init``; its state dir on disk;
   CoAP served, so ``"coap": true`` joins get an OSCORE context), and ``--fleet`` agents joining over HTTP,
   ``--concurrency`` at a time, half of them asking for OSCORE material. The join token's principal is rate
   limited (200 calls/s, a burst of 400), as one bootstrap token should be, so the fleet joins with
   ``--join-tokens`` join credentials (``edgerm token create --role join``) to measure the master rather than
   the limit; then one token alone, to show the limit. Reported: joins/s, p50/p99 latency, and that every
   joined token authenticates afterwards (a HEARTBEAT answered 200 or a typed 4xx, never 401).

Results: bench/results/joins.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, pct, save, secure_master, spawn, stop

from edgerm.auth import credentials as creds
from edgerm.auth.cli import token_main
from edgerm.auth.principal import Role
from edgerm.ids import AgentId


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


def _store_with(directory: Path, n: int) -> Path:
    """A credentials file (admin, join) and ``n`` agents joined through the journal."""
    path = directory / creds.CREDENTIALS_FILE
    creds.update(path, lambda c: c, create=True)
    store = creds.CredentialStore(path=path)
    store.issue(Role.ADMIN, "admin")
    store.issue(Role.JOIN, "join")
    for i in range(n):
        store.join(AgentId(f"fleet-{i}"))
    return path


def store_run(n: int, samples: int, baseline: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"credentials": n}
    with tempfile.TemporaryDirectory(prefix="edgerm-joins-") as tmp:
        path = _store_with(Path(tmp), n)
        store = creds.CredentialStore(path=path)
        took = []
        for i in range(samples):
            t = time.perf_counter()
            store.join(AgentId(f"new-{i}"))
            took.append(time.perf_counter() - t)
        out["join"] = _ms(took)
        t = time.perf_counter()
        loaded = len(creds.CredentialStore(path=path).credentials)
        out["load_s"] = round(time.perf_counter() - t, 3)
        out["loaded"] = loaded
    if baseline:
        with tempfile.TemporaryDirectory(prefix="edgerm-joins-yaml-") as tmp:
            path = Path(tmp) / creds.CREDENTIALS_FILE
            everything = creds.CredentialStore(path=_store_with(Path(tmp), n)).credentials
            creds.save(path, everything)  # the YAML holds the agents, as before the journal
            (Path(tmp) / "credentials.joined.jsonl").unlink()
            minting = creds.CredentialStore()
            took = []
            for i in range(max(3, samples // 20)):
                _, credential = minting.join(AgentId(f"yaml-{i}"))
                t = time.perf_counter()
                creds.update(path, lambda c, new=credential: c.added(new))  # type: ignore[misc]
                took.append(time.perf_counter() - t)
            out["baseline_yaml_rewrite"] = _ms(took)
            out["ratio_old_over_new_p50"] = round(out["baseline_yaml_rewrite"]["p50_ms"] / out["join"]["p50_ms"], 1)
    return out


async def _join_fleet(url: str, tokens: list[str], fleet: int, concurrency: int, prefix: str) -> dict[str, Any]:
    took: list[float] = []
    refused: dict[str, int] = {}
    joined: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(fleet):
        queue.put_nowait(i)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"agent_id": f"{prefix}-{i}", "coap": i % 2 == 1}
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            while True:
                t = time.perf_counter()
                async with http.post(url + "/api/v1/join", json=body, headers=headers) as r:
                    data = await r.read()
                    if r.status == 200:
                        took.append(time.perf_counter() - t)
                        doc = json.loads(data)
                        assert ("oscore" in doc) == body["coap"], doc.keys()
                        joined.append(doc["token"])
                        break
                    refused[str(r.status)] = refused.get(str(r.status), 0) + 1
                    if r.status not in (429, 503):
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", "0.1")))

    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        unauthenticated = 0
        for token in joined[:: max(1, len(joined) // 200)]:  # a sample of the joined tokens still authenticates
            async with http.post(url + "/api/v1/agent", data=b"", headers={"Authorization": f"Bearer {token}"}) as r:
                unauthenticated += r.status == 401
    return {
        "agents": fleet,
        "join_tokens": len(tokens),
        "seconds": round(elapsed, 2),
        "joins_per_second": round(len(took) / elapsed, 1),
        "latency": _ms(took) if took else None,
        "refused": refused,
        "sampled_tokens_refused_401": unauthenticated,
    }


def master_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgerm-joins-master-") as tmp:
        state = Path(tmp) / "state"
        flags = secure_master(state)
        tokens = [os.environ["EDGERM_JOIN_TOKEN"]]
        for _ in range(args.join_tokens - 1):  # `edgerm token create --role join --quiet`
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert token_main(["create", "--role", "join", "--quiet", *flags]) == 0
            tokens.append(printed.getvalue().strip())
        port, coap = free_port(), free_port(kind=2)
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--coap-port", str(coap), "--no-broker", "--log-level", "warning", *flags]
        proc = spawn(cmd, ready_url=url + "/api/v1/state", log=Path(tmp) / "master.log")
        try:
            many = asyncio.run(_join_fleet(url, tokens, args.fleet, args.concurrency, "many"))
            one = asyncio.run(_join_fleet(url, tokens[:1], args.fleet // 2, args.concurrency, "one"))
        finally:
            stop(proc)
        log = (Path(tmp) / "master.log").read_text(errors="replace")
        return {
            "fleet_many_tokens": many,
            "fleet_one_token": one,
            "tracebacks_in_master_log": log.count("Traceback"),
            "journal_lines": len((state / "credentials.joined.jsonl").read_bytes().splitlines()),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,5000,10000,50000", help="joined agents already in the store")
    p.add_argument("--baseline-sizes", default="1000,5000", help="sizes that also time the old YAML rewrite")
    p.add_argument("--samples", type=int, default=200, help="joins timed per size")
    p.add_argument("--fleet", type=int, default=2000, help="agents joining the real master")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--join-tokens", type=int, default=8)
    p.add_argument("--no-master", action="store_true", help="the store part only")
    p.add_argument("--out", default="joins")
    args = p.parse_args()
    baseline = {int(s) for s in args.baseline_sizes.split(",") if s}
    result: dict[str, Any] = {"command": "bench/joins.py " + " ".join(sys.argv[1:]), "store": []}
    for n in (int(s) for s in args.sizes.split(",")):
        run = store_run(n, args.samples, n in baseline)
        result["store"].append(run)
        print(f"store, {n} joined: join {run['join']}", run.get("baseline_yaml_rewrite", ""), flush=True)
        if "ratio_old_over_new_p50" in run:
            print(f"  old YAML rewrite / journal (p50): x{run['ratio_old_over_new_p50']}", flush=True)
    if not args.no_master:
        result["master"] = master_run(args)
        for key in ("fleet_many_tokens", "fleet_one_token"):
            print(key, json.dumps(result["master"][key]), flush=True)
        print("tracebacks in the master's log:", result["master"]["tracebacks_in_master_log"])
    print("saved", save(args.out, result))


if __name__ == "__main__":
    main()
