"""Replaying a decision from its manifest: every raw input re-hashed against its CID, every recorded step
re-run with the pinned code and model, and the result compared with the attested report.

Pure with respect to I/O: bytes come from a :class:`ContentSource` (the content store, a directory of
files named by CID, a bundle), the attested report from the caller. Steps are dispatched by name through
:data:`STEP_REPLAYERS`; :func:`register_step` adds a kind of step (the cold-chain steps plug in the same
way). A step's inputs that are outputs of earlier steps are taken from the *recomputed* outputs, never
from stored intermediates, so nothing but the raw inputs and the model has to be trusted or shipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from oracle.decisions import coldchain, drought
from oracle.decisions.trace import Step, canonical_json
from oracle.errors import IntegrityError, NotFound, OracleError, ValidationError
from oracle.provenance import merkle_root
from oracle.reports import Report, report_digest
from oracle.storage.blobs import cid_for, verify

if TYPE_CHECKING:
    from oracle.verify.device_signatures import DeviceAuth

MATCH = "MATCH"
MISMATCH = "MISMATCH"


class ContentSource(Protocol):
    """Bytes by CID, as stored (not yet checked: the replay checks and names what does not match)."""

    def read(self, cid: str) -> bytes: ...


@dataclass(frozen=True)
class AttestedReport:
    """A report as the chain (or a bundle) holds it. ``report_hash``: the EIP-712 digest the router stored."""

    report: Report
    chain_id: int
    router: str
    tx_hash: str
    block_number: int
    report_hash: bytes


@dataclass(frozen=True)
class Check:
    """One comparison: ``name`` (e.g. ``step 3 features``), ``status`` MATCH or MISMATCH, ``detail``."""

    name: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == MATCH


@dataclass(frozen=True)
class Verification:
    """Every check in order; ``first_mismatch`` names the first failed one (None on a full match)."""

    manifest_cid: str
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_mismatch(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict[str, Any]:
        first = self.first_mismatch
        return {
            "result": MATCH if self.ok else MISMATCH,
            "manifest_cid": self.manifest_cid,
            "first_mismatch": first.name if first else None,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
            "notes": list(self.notes),
        }


#: A replayer recomputes one step: (the step, its inputs' bytes in order) -> the output object.
StepReplayer = Callable[[Step, list[bytes]], Any]
STEP_REPLAYERS: dict[str, StepReplayer] = {}
#: The steps whose output is the report's fields (all but the epoch): drought and cold chain.
REPORT_STEPS = ("report", "verdict")


def register_step(name: str) -> Callable[[StepReplayer], StepReplayer]:
    """Decorator: replay steps called ``name`` with the decorated function."""

    def add(fn: StepReplayer) -> StepReplayer:
        STEP_REPLAYERS[name] = fn
        return fn

    return add


def _json(data: bytes) -> Any:
    return json.loads(data)


@register_step("zonal_mean")
def _zonal_mean(step: Step, inputs: list[bytes]) -> Any:
    raster, region = inputs
    return drought.zonal_mean_step(raster, region, step.params)


@register_step("weather_series")
def _weather_series(step: Step, inputs: list[bytes]) -> Any:
    (feed,) = inputs
    return drought.weather_series_step(feed, step.params)


@register_step("screen")
def _screen_any(step: Step, inputs: list[bytes]) -> Any:
    """Both pipelines have a "screen" step: readings (cold chain) or zonal means (drought)."""
    docs = [_json(b) for b in inputs]
    if len(docs) == 1 and "readings" in docs[0]:
        return coldchain.screen_step(docs[0], step.params)
    return drought.screen_step(docs, step.params)


@register_step("features")
def _features(step: Step, inputs: list[bytes]) -> Any:
    return drought.features_step([_json(b) for b in inputs], step.params)


@register_step("score")
def _score(step: Step, inputs: list[bytes]) -> Any:
    features, artifact = inputs
    return drought.score_step(_json(features), artifact)


@register_step("report")
def _report(step: Step, inputs: list[bytes]) -> Any:
    (score,) = inputs
    return drought.report_step(_json(score), step.params)


@register_step("readings")
def _readings(step: Step, inputs: list[bytes]) -> Any:
    return coldchain.readings_step(inputs, step.params)


@register_step("rules")
def _rules(step: Step, inputs: list[bytes]) -> Any:
    readings, profile = inputs[0], inputs[1]
    return coldchain.rules_step(_json(readings), profile, step.params)


@register_step("breach_model")
def _breach_model(step: Step, inputs: list[bytes]) -> Any:
    # A fourth input, when present, is the scheduled hand-over the early warning's forecast used.
    readings, profile, artifact, *schedule = inputs
    return coldchain.model_step(_json(readings), profile, artifact, *(_json(b) for b in schedule))


@register_step("verdict")
def _verdict(step: Step, inputs: list[bytes]) -> Any:
    rules, model = inputs
    return coldchain.verdict_report_step(_json(rules), _json(model), step.params)


def load_manifest(source: ContentSource, manifest_cid: str) -> dict[str, Any]:
    """The decision manifest, after checking its bytes hash to ``manifest_cid``.

    :raises IntegrityError: the bytes do not match the CID. :raises ValidationError: not a manifest.
    """
    data = source.read(manifest_cid)
    verify(manifest_cid, data)
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"manifest {manifest_cid} is not JSON: {e}", reason="bad_manifest") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("steps"), list):
        raise ValidationError(f"manifest {manifest_cid} has no step list", reason="bad_manifest")
    return manifest


def _report_fields(report: Report) -> dict[str, Any]:
    return {
        "subject": "0x" + report.subject.hex(),
        "kind": int(report.kind),
        "value": str(report.value),
        "observedAt": report.observed_at,
        "inputsRoot": "0x" + report.inputs_root.hex(),
        "modelId": "0x" + report.model_id.hex(),
    }


@dataclass
class _Replay:
    source: ContentSource
    checks: list[Check] = field(default_factory=list)
    raw: dict[str, bytes] = field(default_factory=dict)
    derived: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, MATCH if ok else MISMATCH, detail))
        return ok

    def check_input(self, cid: str, label: str) -> None:
        try:
            data = self.source.read(cid)
            verify(cid, data)
        except IntegrityError:
            self.add(f"{label} {cid}", False, "its bytes do not hash to its CID (tampered or corrupt)")
            return
        except (NotFound, ValidationError) as e:
            self.add(f"{label} {cid}", False, str(e))
            return
        self.raw[cid] = data
        self.add(f"{label} {cid}", True)

    def bytes_for(self, cid: str) -> bytes:
        if cid in self.derived:
            return self.derived[cid]
        if cid in self.raw:
            return self.raw[cid]
        raise NotFound(f"{cid} is neither a raw input of the manifest nor an earlier step's output")

    def step(self, index: int, step: Step) -> Any:
        name = f"step {index} {step.name}"
        replayer = STEP_REPLAYERS.get(step.name)
        if replayer is None:
            self.add(name, False, f"no replayer for step {step.name!r} (code {step.code_version})")
            return None
        try:
            output = replayer(step, [self.bytes_for(c) for c in step.inputs])
        except (OracleError, KeyError, ValueError, TypeError) as e:
            self.add(name, False, f"could not recompute: {type(e).__name__}: {e}")
            return None
        data = canonical_json(output)
        cid = cid_for(data)
        # Later steps consume what *we* computed, so a difference propagates instead of being masked.
        self.derived[step.output] = data
        self.add(name, cid == step.output, f"recorded {step.output}, recomputed {cid}")
        return output


def replay(
    source: ContentSource,
    manifest_cid: str,
    attested: AttestedReport,
    *,
    device_keys: Mapping[str, DeviceAuth] | None = None,
) -> Verification:
    """Recompute the decision ``manifest_cid`` and compare it with ``attested``; never raises for a
    mismatch (it is reported), only for a manifest that cannot be read at all.

    ``device_keys``: the devices' public keys; when given, every telemetry message among the inputs must
    verify under its device's key (one check per device, see :mod:`oracle.verify.device_signatures`)."""
    from models.registry import model_id_for

    manifest = load_manifest(source, manifest_cid)
    run = _Replay(source)
    inputs = [str(c) for c in manifest.get("inputs") or []]
    for cid in inputs:
        run.check_input(cid, "input")
    notes: list[str] = []
    if device_keys is not None:
        from oracle.verify.device_signatures import signature_checks

        signed, notes = signature_checks({c: run.raw[c] for c in inputs if c in run.raw}, device_keys)
        run.checks.extend(signed)
    model_cid = manifest.get("model")
    if model_cid:
        run.check_input(str(model_cid), "model")

    report_output: Any = None
    for i, raw_step in enumerate(manifest["steps"], start=1):
        step = Step.from_json(raw_step)
        output = run.step(i, step)
        if step.name in REPORT_STEPS:
            report_output = output

    report = attested.report
    root = "0x" + merkle_root(inputs).hex()
    run.add("inputsRoot", root == _report_fields(report)["inputsRoot"], f"recomputed {root}")
    if model_cid and str(model_cid) in run.raw:
        model_id = "0x" + model_id_for(run.raw[str(model_cid)]).hex()
        run.add("modelId", model_id == _report_fields(report)["modelId"], f"recomputed {model_id}")
    else:
        run.add("modelId", False, "the model artifact is missing or corrupt")
    expected = _report_fields(report)
    if report_output is None:
        run.add("report fields", False, "no report step could be recomputed")
    else:
        differ = sorted(k for k, v in expected.items() if report_output.get(k) != v)
        run.add("report fields", not differ, f"differ: {', '.join(differ)}" if differ else "")
    digest = report_digest(report, chain_id=attested.chain_id, router=attested.router)
    run.add(
        "EIP-712 digest",
        digest == attested.report_hash,
        f"recomputed 0x{digest.hex()}, attested 0x{attested.report_hash.hex()}",
    )
    return Verification(manifest_cid=manifest_cid, checks=tuple(run.checks), notes=tuple(notes))


def report_to_json(report: Report) -> dict[str, Any]:
    return {**_report_fields(report), "epoch": report.epoch}


def report_from_json(d: Mapping[str, Any]) -> Report:
    """Inverse of :func:`report_to_json`. :raises ValidationError: malformed fields."""
    from oracle.reports import ReportKind

    try:
        return Report(
            subject=bytes.fromhex(str(d["subject"])[2:]),
            kind=ReportKind(int(d["kind"])),
            value=int(d["value"]),
            epoch=int(d["epoch"]),
            observed_at=int(d["observedAt"]),
            inputs_root=bytes.fromhex(str(d["inputsRoot"])[2:]),
            model_id=bytes.fromhex(str(d["modelId"])[2:]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValidationError(f"malformed report: {e}", reason="bad_report") from e
