"""Fixtures for the operators' API: a migrated database (SQLite and PostgreSQL), keys of every role,
and the app from ``create_app`` driven through Starlette's TestClient."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.api.limits import ApiLimits
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.storage.tables import Observation, OutboxRow, Payout, Policy, Reject, ReportRow, Shipment

#: Generous enough that only the rate-limit tests ever hit the limit.
TEST_LIMITS = ApiLimits(rate_per_s=10_000, burst=10_000, max_body_bytes=16_384)


@pytest.fixture
def ctx(database_url: str, tmp_path: Path) -> Iterator[Context]:
    settings = Settings(
        env="dev",
        data_dir=tmp_path / "data",
        database_url=database_url,
        _env_file=None,  # type: ignore[call-arg]
    )
    context = open_context(settings)
    yield context
    context.close()


@dataclass(frozen=True)
class Keys:
    viewer: str
    operator: str
    admin: str

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


@pytest.fixture
def keys(ctx: Context) -> Keys:
    with ctx.sessions() as s:
        made = {role: create_key(s, role=role, name=f"test-{role.value}").secret_key for role in Role}
        s.commit()
    return Keys(viewer=made[Role.VIEWER], operator=made[Role.OPERATOR], admin=made[Role.ADMIN])


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, limits=TEST_LIMITS)) as c:
        yield c


SUBJECT_A = "0x" + "a1" * 32
SUBJECT_B = "0x" + "b2" * 32
POOL = "0x" + "11" * 20
INSURED = "0x" + "22" * 20
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def seed(ctx: Context) -> None:
    """A small, known world: reports (one confirmed on-chain), policies, payouts, shipments, inputs."""
    from oracle.storage.tables import Blob

    with ctx.sessions() as s:
        for i in range(1, 6):
            s.add(
                ReportRow(
                    subject=SUBJECT_A if i % 2 else SUBJECT_B,
                    subject_name="region:a" if i % 2 else "shipment:b",
                    kind=1 if i % 2 else 2,
                    value=str(1_250_000 if i % 2 else 1),
                    epoch=i,
                    observed_at=1_700_000_000 + i,
                    inputs_root="0x" + "00" * 32,
                    model_id="0x" + "00" * 32,
                    status="confirmed" if i == 1 else "queued",
                    detail={
                        "signers": ["0x" + "33" * 20],
                        "factors": [{"name": f"f{j}", "weight": j} for j in range(5)],
                    },
                    created_at=T0 + dt.timedelta(days=i),
                )
            )
        s.flush()
        s.add(
            OutboxRow(
                key=f"report:{SUBJECT_A}:1",
                purpose="report",
                report_id=1,
                to_address=POOL,
                calldata=b"\x01\x02",
                gas_limit=0,
                status="confirmed",
                tx_hash="0x" + "ab" * 32,
                gas_used=91_000,
                block_number=12,
                raw_tx=b"secret-ish raw bytes",
                last_error="rpc https://user:apikey@rpc.example/v3/KEY failed",
            )
        )
        s.add(
            OutboxRow(
                key=f"report:{SUBJECT_B}:2",
                purpose="report",
                report_id=2,
                to_address=POOL,
                calldata=b"\x03",
                gas_limit=0,
                status="pending",
            )
        )
        for pid in range(3):
            s.add(
                Policy(
                    pool=POOL,
                    policy_id=pid,
                    insured=INSURED,
                    region_subject=SUBJECT_A,
                    coverage_start=0,
                    coverage_end=10,
                    trigger="1000000",
                    exit="3000000",
                    limit="500000000",
                    status="paid" if pid == 0 else "active",
                )
            )
        s.add(
            Payout(
                pool=POOL,
                policy_id=0,
                insured=INSURED,
                amount="125000000",
                tx_hash="0x" + "cd" * 32,
                log_index=0,
                block_number=13,
            )
        )
        s.add(
            Shipment(
                subject=SUBJECT_B,
                escrow=POOL,
                buyer=INSURED,
                seller=INSURED,
                amount="1000",
                profile="0x" + "44" * 32,
                deadline=1_800_000_000,
                status="voided",
            )
        )
        s.add(Blob(cid="bafy-test-1", size=3))
        s.flush()
        s.add(
            Observation(
                kind="telemetry",
                variable="temp_c",
                subject="shipment:b",
                cid="bafy-test-1",
                observed_at=T0,
            )
        )
        s.add(
            Reject(
                source="mqtt",
                reason="bad_signature",
                message="HMAC does not match",
                subject="dev-1",
                cid=None,
            )
        )
        s.add(Reject(source="http", reason="malformed", message="not JSON", subject="", cid=None))
        s.commit()
