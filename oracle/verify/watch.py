"""``oracle watch``: anyone can recompute every report the router accepts, with no key of the network.

The watcher follows ``ReportAccepted`` on the router (an RPC URL is all it needs from the chain), asks
the nodes for the decision manifest behind each report (``GET /v1/reports/{subject}/{epoch}/manifest``,
no API key), fetches every input, model and step by CID (``GET /v1/blobs/{cid}``, checked against the
CID on arrival; a bundle directory from ``oracle export`` may stand in for the nodes) and replays the
decision step by step (:func:`oracle.verify.replay.replay`).

* **MATCH**: some node's manifest reproduces the report bit for bit. Nodes that serve a manifest that
  does not are noted, but a report one honest manifest reproduces is not wrong.
* **MISMATCH**: every manifest offered fails; the evidence (the checks of each, and the first
  mismatching step) is written as canonical JSON named by its CID under the evidence directory, ready
  to be filed as ``dispute(subject, epoch, evidenceCid)``.
* **UNAVAILABLE**: no node offers a manifest, or an input cannot be fetched: the data behind a posted
  report is being withheld. Counted and logged; retried on later passes for ``retry_unavailable_s``.

Every check is logged; ``/metrics`` (``--metrics-port``) counts reports checked, matches, mismatches,
unavailable ones and disputes filed. The cursor (last block fully checked) and the pending retries are
kept in a JSON state file written atomically after each report, so a watcher killed at any moment goes
on where it stopped: a report is checked at least once, and checking twice is harmless.

Filing the dispute. Without a key the watcher writes the evidence and counts the dispute it would file
(``oracle_watch_disputes``). Given the watcher's own funded account and the pool and/or the escrow
(``filer``, a :class:`~oracle.verify.dispute_filer.DisputeFiler`), a MISMATCH its consumer can still
take (a drought report on the pool, a cold-chain verdict on the escrow; its liveness window open) is
queued as ``approve`` + ``dispute(subject, epoch, evidenceCid)`` in a durable outbox
before the cursor passes the report, and sent; disputes confirmed on-chain are counted
(``oracle_watch_disputes_filed``). A watcher killed at any moment neither loses nor repeats a dispute.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from eth_utils.address import to_checksum_address
from web3 import Web3

from oracle.decisions.trace import canonical_json
from oracle.errors import IntegrityError, NotFound, OracleError
from oracle.storage.blobs import cid_for, parse_cid, verify
from oracle.verify.device_signatures import DeviceAuth
from oracle.verify.replay import MISMATCH, AttestedReport, Verification, replay
from oracle.verify.sources import DirectorySource

if TYPE_CHECKING:
    from oracle.verify.dispute_filer import DisputeFiler

log = logging.getLogger(__name__)

MATCH = "MATCH"
UNAVAILABLE = "UNAVAILABLE"
#: Largest block range asked of the RPC in one ``eth_getLogs``.
MAX_RANGE = 2_000


class HttpSource:
    """Bytes by CID from the nodes' public blob endpoints (then a bundle directory), each checked
    against its CID: a node that sends other bytes is skipped, never believed.

    A CID no source could provide is remembered in :attr:`unavailable`: a replay that lacked data is
    not evidence of a wrong report (the watcher calls it UNAVAILABLE and tries again later). A node
    that answers 429 is waited for (its ``Retry-After``, at most :data:`MAX_WAIT_S`) a few times.
    """

    #: Longest single wait for a rate-limited node, seconds, and how many times to wait per blob.
    MAX_WAIT_S = 5.0
    RETRIES_429 = 3

    def __init__(self, nodes: Sequence[str], client: httpx.Client, bundle: Path | None = None) -> None:
        self.nodes = [n.rstrip("/") for n in nodes]
        self.client = client
        self.bundle = DirectorySource(bundle) if bundle is not None else None
        self.refused: list[str] = []
        self.unavailable: set[str] = set()

    def _get(self, url: str) -> httpx.Response:
        for _ in range(self.RETRIES_429):
            r = self.client.get(url)
            if r.status_code != 429:
                return r
            try:
                wait = float(r.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.05), self.MAX_WAIT_S))
        return self.client.get(url)

    def read(self, cid: str) -> bytes:
        try:
            return self._read(cid)
        except NotFound:
            self.unavailable.add(cid)
            raise

    def _read(self, cid: str) -> bytes:
        parse_cid(cid)
        answers = []
        for node in self.nodes:
            try:
                r = self._get(f"{node}/v1/blobs/{cid}")
            except httpx.HTTPError as e:
                answers.append(f"{node}: {type(e).__name__}")
                continue
            if r.status_code != 200:
                answers.append(f"{node}: {r.status_code}")
                continue
            try:
                verify(cid, r.content)
            except IntegrityError:
                self.refused.append(f"{node} sent bytes that do not match {cid}")
                answers.append(f"{node}: wrong bytes")
                continue
            return r.content
        if self.bundle is not None:
            try:
                data = self.bundle.read(cid)
                verify(cid, data)
                return data
            except (NotFound, IntegrityError) as e:
                answers.append(f"bundle: {e}")
        raise NotFound(f"{cid} is available from no node ({'; '.join(answers) or 'none given'})")


@dataclass
class WatchResult:
    subject: str
    epoch: int
    tx_hash: str
    status: str
    detail: str = ""
    manifest_cid: str = ""
    first_mismatch: str | None = None
    evidence_cid: str | None = None
    #: With a filer: "queued" (stored to be sent), "queued before", or why the pool would refuse it.
    dispute: str | None = None


@dataclass
class WatchState:
    """The cursor and the reports to look at again (their data was unavailable)."""

    block: int = -1
    retry: dict[str, float] = field(default_factory=dict)  # tx hash -> first seen (UNIX seconds)

    @classmethod
    def load(cls, path: Path) -> WatchState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(block=int(raw["block"]), retry={str(k): float(v) for k, v in raw.get("retry", {}).items()})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".watch-")
        with os.fdopen(fd, "w") as f:
            json.dump({"block": self.block, "retry": self.retry}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class WatchMetrics:
    """Counters for ``/metrics``, in a registry of the watcher's own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry()
        self.checked = Counter(
            "oracle_watch_reports_checked", "reports replayed", ["result"], registry=self.registry
        )
        self.disputes = Counter(
            "oracle_watch_disputes", "disputes the watcher filed (evidence written)", registry=self.registry
        )
        self.filed = Counter(
            "oracle_watch_disputes_filed",
            "disputes confirmed on-chain (sent with --dispute-key)",
            registry=self.registry,
        )


class Watcher:
    def __init__(
        self,
        w3: Web3,
        *,
        router: str,
        nodes: Sequence[str],
        state_path: Path,
        evidence_dir: Path,
        bundle: Path | None = None,
        from_block: int = 0,
        confirmations: int = 0,
        retry_unavailable_s: float = 3600.0,
        timeout_s: float = 10.0,
        filer: DisputeFiler | None = None,
    ) -> None:
        from oracle.chain.artifacts import load_artifact

        self.w3 = w3
        self.router = w3.eth.contract(
            address=to_checksum_address(router), abi=list(load_artifact("OracleRouter").abi)
        )
        self.nodes = list(nodes)
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=2.0), trust_env=False)
        self.source = HttpSource(self.nodes, self.client, bundle)
        self.state_path = state_path
        self.evidence_dir = evidence_dir
        self.state = WatchState.load(state_path)
        if self.state.block < 0:
            self.state.block = from_block - 1
        self.confirmations = confirmations
        self.retry_unavailable_s = retry_unavailable_s
        self.metrics = WatchMetrics()
        self.filer = filer

    def close(self) -> None:
        self.client.close()

    def poll(self, *, now: float | None = None) -> list[WatchResult]:
        """Check every report accepted since the cursor (and retry unavailable ones)."""
        current = time.time() if now is None else now
        self._pump()
        results = [self._retry(tx, current) for tx in sorted(self.state.retry)]
        final = int(self.w3.eth.block_number) - self.confirmations
        start = self.state.block + 1
        while start <= final:
            end = min(final, start + MAX_RANGE - 1)
            logs = self.router.events.ReportAccepted().get_logs(from_block=start, to_block=end)
            for entry in sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"])):
                tx = "0x" + bytes(entry["transactionHash"]).hex()
                result = self.check(tx)
                if result.status == UNAVAILABLE:
                    self.state.retry.setdefault(tx, current)
                results.append(result)
                self.state.save(self.state_path)  # the retry list, before the cursor passes the block
            self.state.block = end
            self.state.save(self.state_path)
            start = end + 1
        self._pump()
        return results

    def _pump(self) -> None:
        if self.filer is not None:
            filed = self.filer.pump()
            if filed:
                self.metrics.filed.inc(filed)

    def _retry(self, tx: str, now: float) -> WatchResult:
        result = self.check(tx)
        if result.status != UNAVAILABLE or now - self.state.retry[tx] > self.retry_unavailable_s:
            del self.state.retry[tx]
            self.state.save(self.state_path)
        return result

    def check(self, tx_hash: str) -> WatchResult:
        """Replay the report accepted in ``tx_hash`` from the data the nodes serve."""
        from oracle.verify.chain import read_attested

        attested = read_attested(self.w3, router=self.router.address, tx_hash=tx_hash)
        subject = "0x" + attested.report.subject.hex()
        epoch = attested.report.epoch
        manifests = self._manifests(subject, epoch)
        if not manifests:
            return self._done(
                WatchResult(subject, epoch, tx_hash, UNAVAILABLE, "no node serves a manifest for this report")
            )
        tried: list[Verification] = []
        for manifest, keys in manifests.items():
            self.source.unavailable.clear()
            try:
                verification = replay(self.source, manifest, attested, device_keys=keys)
            except NotFound as e:
                return self._done(WatchResult(subject, epoch, tx_hash, UNAVAILABLE, str(e), manifest))
            except OracleError as e:
                log.warning("watch: manifest %s for %s epoch %s is unusable: %s", manifest, subject, epoch, e)
                continue
            if verification.ok:
                return self._done(WatchResult(subject, epoch, tx_hash, MATCH, "", manifest))
            if self.source.unavailable:
                # Data withheld or rate-limited away is no evidence against the report: look again later.
                missing = ", ".join(sorted(self.source.unavailable)[:3])
                return self._done(
                    WatchResult(subject, epoch, tx_hash, UNAVAILABLE, f"could not fetch {missing}", manifest)
                )
            tried.append(verification)
        if not tried:
            return self._done(
                WatchResult(subject, epoch, tx_hash, UNAVAILABLE, "no manifest offered could be read")
            )
        first = tried[0].first_mismatch
        evidence_cid = self._evidence(attested, tried)
        self.metrics.disputes.inc()
        result = WatchResult(
            subject,
            epoch,
            tx_hash,
            MISMATCH,
            first.detail if first else "",
            tried[0].manifest_cid,
            first.name if first else None,
            evidence_cid,
        )
        self._done(result)
        if self.filer is not None:
            kind = attested.report.kind
            why_not = self.filer.disputable(attested.report.subject, epoch, tx_hash, kind=kind)
            if why_not is None:
                queued = self.filer.file(attested.report.subject, epoch, evidence_cid, kind=kind)
                result.dispute = "queued" if queued else "queued before"
            else:
                result.dispute = why_not
                log.warning("watch: not disputing subject=%s epoch=%s: %s", subject, epoch, why_not)
        return result

    def _manifests(self, subject: str, epoch: int) -> dict[str, dict[str, DeviceAuth] | None]:
        """Each distinct manifest CID the nodes name for (subject, epoch), with the device public keys
        served beside it (a cold-chain verdict): every telemetry message is then checked against its
        device's key. Keys that two nodes serve differently for one manifest are not used for it."""
        found: dict[str, dict[str, DeviceAuth] | None] = {}
        seen: dict[str, Any] = {}
        for node in self.nodes:
            try:
                r = self.client.get(f"{node.rstrip('/')}/v1/reports/{subject}/{epoch}/manifest")
            except httpx.HTTPError as e:
                log.info(
                    "watch: %s did not answer for %s epoch %s: %s", node, subject, epoch, type(e).__name__
                )
                continue
            if r.status_code != 200:
                continue
            try:
                doc = r.json()
                cid = str(doc["manifest_cid"])
                parse_cid(cid)
                raw_keys = doc.get("device_keys") or {}
                keys = {str(d): DeviceAuth.from_json(k) for d, k in raw_keys.items()} or None
            except (ValueError, KeyError, TypeError, AttributeError, OracleError):
                log.warning("watch: %s answered a malformed manifest reference", node)
                continue
            if cid not in found:
                found[cid], seen[cid] = keys, raw_keys
            elif seen[cid] != raw_keys:
                log.warning("watch: nodes serve different device keys for manifest %s; not using them", cid)
                found[cid] = None
        return found

    def _evidence(self, attested: AttestedReport, tried: Sequence[Verification]) -> str:
        """The evidence as canonical JSON, stored under its CID (what a dispute would name)."""
        doc: dict[str, Any] = {
            "router": attested.router,
            "chain_id": attested.chain_id,
            "tx_hash": attested.tx_hash,
            "subject": "0x" + attested.report.subject.hex(),
            "epoch": attested.report.epoch,
            "report_hash": "0x" + attested.report_hash.hex(),
            "replays": [v.to_json() for v in tried],
        }
        data = canonical_json(doc)
        cid = cid_for(data)
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        (self.evidence_dir / cid).write_bytes(data)
        return cid

    def _done(self, result: WatchResult) -> WatchResult:
        self.metrics.checked.labels(result.status).inc()
        line = (
            f"watch: {result.status} subject={result.subject} epoch={result.epoch} tx={result.tx_hash}"
            f" manifest={result.manifest_cid or '-'}"
        )
        if result.status == MISMATCH:
            log.warning("%s first_mismatch=%r evidence=%s", line, result.first_mismatch, result.evidence_cid)
        elif result.status == UNAVAILABLE:
            log.warning("%s: %s", line, result.detail)
        else:
            log.info("%s", line)
        return result
