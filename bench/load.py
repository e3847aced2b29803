"""Load on the telemetry HTTP gateway: authenticated and unauthenticated posts at once, against a real
``oracle run --no-demo`` (its own anvil, mosquitto and signer child, API on a free port, temp data dir).

Two classes of traffic run concurrently, each ``--n`` posts at ``--concurrency`` in flight (httpx async):

- ``authenticated``: envelopes of ``--readings`` readings each, signed (``--alg``, default ES256 with the
  devices' own keys; HS256 with their secrets) by ``--devices`` registered devices, round-robin; each
  device posts from a source address of its own (127.0.0.10, .11, ...), so only the per-device limit binds;
- ``unauthenticated``: envelopes of about 6 KB (the review's 500 posts added 2.9 MB) signed with the right
  alg but another key (a forged ES256 envelope by default) for those devices, or for devices that do not
  exist, all from one source address (127.0.0.3), so the per-source limit binds.

The service runs with explicit limits (``--device-rate``/``--device-burst``, ``--source-rate``/
``--source-burst``). The bench checks, from the answers and the service's own data dir:

- per device: 202s <= burst + rate x (the class's duration) + 1, for every device;
- per source: non-429 answers from the unauthenticated address <= burst + rate x duration + 1;
- nothing unauthenticated is stored: new blob files and new ``telemetry_batch`` observations equal the
  authenticated 202s, new readings equal the readings those 202s accepted, and new reject rows (the one
  bounded row, without payload, that an unauthenticated post below its limit leaves) number at most the
  unauthenticated non-429 answers.

Prints a table (requests/s, p50/p99 latency, status codes per class, what was stored) and ONE final JSON
line; exits 1 when a check fails. Usage: ``python bench/load.py [--n 500] [--concurrency 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on the path, and bench/ingest.py would shadow the ingest package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from ingest.telemetry import sign_envelope
from ingest.telemetry.envelope import sign_envelope_with_key
from oracle.config import Settings
from oracle.context import open_context
from oracle.device_keys import PrivateKey, public_pem
from oracle.devices import load_kek, register_device, register_device_key
from oracle.devstack.broker import free_port

AUTH_SOURCE_BASE = "127.0.0.{}"  # .10, .11, ...: one address per device
UNAUTH_SOURCE = "127.0.0.3"
UNAUTH_READINGS = 110  # about 6 KB per envelope, as in the review (2.9 MB for 500)
UNAUTH_SEQ = 1_000_000  # unauthenticated readings use sequence numbers from here on
Credential = bytes | PrivateKey
"""A device's HS256 secret, or its private key (ES256/EdDSA; the service holds only the public key)."""


@dataclass
class ClassResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # HTTP status, or the client error's name
    accepted_readings: int = 0
    per_device_202: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _oracle_cli() -> list[str]:
    script = Path(sys.executable).with_name("oracle")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from oracle.cli import main; main()"]


@contextlib.contextmanager
def oracle_run(data_dir: Path, limits: dict[str, str]) -> Iterator[str]:
    """A real ``oracle run --no-demo`` in ``data_dir`` with the given extra settings; yields its API URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    port = free_port()
    env |= {
        "ORACLE_DATA_DIR": str(data_dir),
        "ORACLE_API_PORT": str(port),
        "ORACLE_LOG_LEVEL": "WARNING",
        "ORACLE_RUN_INGEST_WORKER": "false",  # HTTP only: no MQTT consumer competing for the CPU
        **limits,
    }
    log_path = data_dir.parent / "oracle-run.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [*_oracle_cli(), "run", "--single", "--no-demo"],
            env=env,
            cwd=data_dir.parent,  # no stray .env from the caller's directory
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"oracle run exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"oracle run: no /healthz within 180 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def register_devices(data_dir: Path, n: int, alg: str) -> dict[str, Credential]:
    """``n`` devices bound to one shipment from an hour ago, in the service's database (same data dir):
    by public key for ES256/EdDSA (the private key stays here, on the devices' side), else HS256."""
    ctx = open_context(Settings(data_dir=data_dir, _env_file=None))
    try:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        out: dict[str, Credential] = {}
        for i in range(n):
            device = f"load-{i:03d}"
            if alg == "HS256":
                out[device] = register_device(
                    ctx.sessions,
                    load_kek(ctx.settings),
                    device_id=device,
                    shipment_id="SHP-LOAD",
                    valid_from=start,
                )
                continue
            key = _new_key(alg)
            register_device_key(
                ctx.sessions,
                device_id=device,
                public_key_pem=public_pem(key),
                shipment_id="SHP-LOAD",
                valid_from=start,
            )
            out[device] = key
        return out
    finally:
        ctx.close()


def _new_key(alg: str) -> PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    return ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else ed25519.Ed25519PrivateKey.generate()


def _sign(body: Any, credential: Credential) -> dict[str, Any]:
    if isinstance(credential, bytes):
        return sign_envelope(body, credential)
    return sign_envelope_with_key(body, credential)


def stored(data_dir: Path) -> dict[str, int]:
    """What posts can leave behind, read from the service's own data dir."""
    files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    with contextlib.closing(sqlite3.connect(data_dir / "oracle.sqlite3", timeout=30)) as db:

        def count(sql: str, *args: int) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        return {
            "blob_files": len(files),
            "blob_bytes": sum(p.stat().st_size for p in files),
            "batches": count("SELECT count(*) FROM observations WHERE kind = 'telemetry_batch'"),
            "readings": count("SELECT count(*) FROM telemetry_readings"),
            "reject_rows": count("SELECT count(*) FROM rejects WHERE source = 'http'"),
            "unauth_readings": count("SELECT count(*) FROM telemetry_readings WHERE seq >= ?", UNAUTH_SEQ),
        }


def _readings(first_seq: int, n: int) -> list[dict[str, Any]]:
    ts = int(time.time() * 1000)
    return [{"seq": first_seq + i, "ts": ts + i, "temp_c": 4.5} for i in range(n)]


async def _send(client: httpx.AsyncClient, url: str, body: bytes, result: ClassResult, device: str) -> None:
    started = time.perf_counter()
    try:
        r = await client.post(url, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as e:  # counted apart: no answer, so not a status code
        result.statuses[type(e).__name__] += 1
        return
    result.latencies_ms.append((time.perf_counter() - started) * 1000)
    result.statuses[str(r.status_code)] += 1
    if r.status_code == 202:
        result.per_device_202[device] += 1
        result.accepted_readings += int(r.json()["accepted"])


async def run_class(
    name: str, base: str, posts: list[tuple[str, str, bytes]], concurrency: int
) -> ClassResult:
    """Send ``posts`` (device, source address, body) with at most ``concurrency`` in flight."""
    result = ClassResult(name)
    clients: dict[str, httpx.AsyncClient] = {}
    # Idle connections are dropped well before uvicorn's 5 s keep-alive ends them (a reuse racing the
    # server's close shows up as a ReadError, which is the client's artefact, not the service's answer).
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
    )
    for _, source, _ in posts:
        if source not in clients:
            transport = httpx.AsyncHTTPTransport(local_address=source, limits=limits)
            clients[source] = httpx.AsyncClient(transport=transport, timeout=60, trust_env=False)
    gate = asyncio.Semaphore(concurrency)

    async def one(device: str, source: str, body: bytes) -> None:
        async with gate:
            await _send(clients[source], f"{base}/v1/telemetry/{device}", body, result, device)

    result.started = time.perf_counter()
    try:
        await asyncio.gather(*(one(*post) for post in posts))
    finally:
        result.finished = time.perf_counter()
        for client in clients.values():
            await client.aclose()
    return result


def build_posts(
    secrets: dict[str, Credential], n: int, readings: int, alg: str
) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str, bytes]]]:
    devices = sorted(secrets)
    thief: Credential = b"\x66" * 32 if alg == "HS256" else _new_key(alg)  # not the device's key
    source = {d: AUTH_SOURCE_BASE.format(10 + i) for i, d in enumerate(devices)}
    authenticated = []
    for i in range(n):
        device = devices[i % len(devices)]
        seq = (i // len(devices)) * readings + 1
        body = json.dumps(_sign(_readings(seq, readings), secrets[device])).encode()
        authenticated.append((device, source[device], body))
    unauthenticated = []
    for i in range(n):
        device = devices[i % len(devices)] if i % 2 else f"ghost-{i:04d}"
        forged = _readings(UNAUTH_SEQ + i * UNAUTH_READINGS, UNAUTH_READINGS)
        envelope = _sign(forged, thief)  # the right alg, the wrong key
        unauthenticated.append((device, UNAUTH_SOURCE, json.dumps(envelope).encode()))
    return authenticated, unauthenticated


def report(
    results: list[ClassResult], before: dict[str, int], after: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    auth, unauth = results
    delta = {k: after[k] - before[k] for k in after}
    device_bound = args.device_burst + args.device_rate * auth.seconds + 1
    device_ok = all(c <= device_bound for c in auth.per_device_202.values())
    unauth_through = sum(c for s, c in unauth.statuses.items() if s.isdigit() and s != "429")
    source_bound = args.source_burst + args.source_rate * unauth.seconds + 1
    source_ok = unauth_through <= source_bound
    auth_202 = auth.statuses["202"]
    # A post that got no answer may still have been stored: only authenticated ones may be.
    auth_unanswered = sum(c for s, c in auth.statuses.items() if not s.isdigit())
    nothing_unauth_stored = (
        unauth.statuses["202"] == 0
        and delta["unauth_readings"] == 0
        and auth_202 <= delta["batches"] <= auth_202 + auth_unanswered
        and delta["blob_files"] == delta["batches"]
        and delta["reject_rows"] <= unauth_through
    )

    print(f"\n{'class':18}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  status codes")
    for r in results:
        codes = ", ".join(f"{s}: {c}" for s, c in sorted(r.statuses.items()))
        print(
            f"{r.name:18}{sum(r.statuses.values()):>9}{sum(r.statuses.values()) / r.seconds:>9.0f}"
            f"{r.quantile_ms(0.5):>9.1f}{r.quantile_ms(0.99):>9.1f}  {codes}"
        )
    most = max(auth.per_device_202.values(), default=0)
    print(
        f"\nper-device limit (burst {args.device_burst}, {args.device_rate}/s over {auth.seconds:.1f} s): "
        f"most 202s for one device {most} <= {device_bound:.0f}: "
        f"{'holds' if device_ok else 'BROKEN'}"
    )
    print(
        f"per-source limit (burst {args.source_burst}, {args.source_rate}/s over {unauth.seconds:.1f} s): "
        f"unauthenticated answers other than 429: {unauth_through} <= {source_bound:.0f}: "
        f"{'holds' if source_ok else 'BROKEN'}"
    )
    print(
        f"stored: +{delta['blob_files']} blob files (+{delta['blob_bytes']} bytes), +{delta['batches']} "
        f"batches, +{delta['readings']} readings for {auth_202} authenticated 202s; "
        f"+{delta['reject_rows']} bounded reject rows for {unauth_through} unauthenticated refusals: "
        f"{'nothing unauthenticated stored' if nothing_unauth_stored else 'UNAUTHENTICATED DATA STORED'}"
    )
    figures: dict[str, Any] = {"bench": "load", "n": args.n, "concurrency": args.concurrency}
    for r in results:
        key = "auth" if r is auth else "unauth"
        figures |= {
            f"{key}_rps": round(sum(r.statuses.values()) / r.seconds, 1),
            f"{key}_p50_ms": round(r.quantile_ms(0.5), 1),
            f"{key}_p99_ms": round(r.quantile_ms(0.99), 1),
            f"{key}_status": dict(sorted(r.statuses.items())),
        }
    figures |= {
        "auth_max_202_per_device": most,
        "per_device_limit_holds": device_ok,
        "unauth_not_429": unauth_through,
        "per_source_limit_holds": source_ok,
        "stored_delta": delta,
        "nothing_unauthenticated_stored": nothing_unauth_stored,
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="posts per class")
    parser.add_argument("--concurrency", type=int, default=50, help="posts in flight per class")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--readings", type=int, default=5, help="readings per authenticated envelope")
    parser.add_argument("--device-rate", type=float, default=2.0)
    parser.add_argument("--device-burst", type=int, default=10)
    parser.add_argument("--source-rate", type=float, default=10.0)
    parser.add_argument("--source-burst", type=int, default=50)
    parser.add_argument(
        "--alg", choices=["ES256", "EdDSA", "HS256"], default="ES256", help="how the devices sign"
    )
    args = parser.parse_args()
    limits = {
        "ORACLE_TELEMETRY_HTTP_DEVICE_RATE_PER_S": str(args.device_rate),
        "ORACLE_TELEMETRY_HTTP_DEVICE_BURST": str(args.device_burst),
        "ORACLE_TELEMETRY_HTTP_SOURCE_RATE_PER_S": str(args.source_rate),
        "ORACLE_TELEMETRY_HTTP_SOURCE_BURST": str(args.source_burst),
    }
    with tempfile.TemporaryDirectory(prefix="oracle-load-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with oracle_run(data_dir, limits) as base:
            secrets = register_devices(data_dir, args.devices, args.alg)
            authenticated, unauthenticated = build_posts(secrets, args.n, args.readings, args.alg)
            before = stored(data_dir)

            async def both() -> list[ClassResult]:
                return list(
                    await asyncio.gather(
                        run_class("authenticated", base, authenticated, args.concurrency),
                        run_class("unauthenticated", base, unauthenticated, args.concurrency),
                    )
                )

            results = asyncio.run(both())
            after = stored(data_dir)
        if any(s.startswith("5") for r in results for s in r.statuses):
            log = (data_dir.parent / "oracle-run.log").read_text(errors="replace")
            print(f"the service answered 5xx; the end of its log:\n{log[-6000:]}", file=sys.stderr)
        figures = report(results, before, after, args)
    print(json.dumps(figures))
    ok = figures["per_device_limit_holds"] and figures["per_source_limit_holds"]
    sys.exit(0 if ok and figures["nothing_unauthenticated_stored"] else 1)


if __name__ == "__main__":
    main()
