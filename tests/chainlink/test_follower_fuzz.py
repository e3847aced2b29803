"""No request stops the direct-request follower: hypothesis fuzzes every field of OracleRequest's CBOR data
(and the evaluator's own failures); each request ends queued or refused with a recorded reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from web3 import Web3

from oracle.chainlink.requests import DirectRequestConfig, OracleRequestFollower, OracleRequestLog
from oracle.chainlink.tasks import TaskAnswer, TaskRequest
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.tables import OutboxRow, Reject
from tests.outbox.helpers import open_db, sqlite_url

JOB = b"\x01" * 32
OPERATOR = "0x" + "42" * 20
NOW = 1_800_000_000

_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.sampled_from(["²", "٣", "10", " 7 ", "1e3", "-1", "0x10", "2026-06", "2026-13"]),
    st.binary(max_size=6),
    st.lists(st.integers(), max_size=2),
)
_PARAMS = st.one_of(
    st.dictionaries(
        st.sampled_from(["region", "period", "times", "shipment", "task", "path", "x"]), _VALUE, max_size=5
    ),
    # Well-formed requests (and the one the review found: times "²" passes str.isdigit, int() raises),
    # so that validation passes and the evaluator is reached.
    st.fixed_dictionaries(
        {
            "region": st.sampled_from(["KE-01", "dry"]),
            "period": st.sampled_from(["2026-06", "2025-12"]),
            "times": st.one_of(st.integers(1, 10_000), st.sampled_from(["10", "²", "١٠"])),
        }
    ),
)


def _cbor_pairs(params: dict[str, Any]) -> bytes:
    """Diet CBOR as ChainlinkClient writes it: the map's pairs without the map header."""
    return cbor2.dumps(params)[1:] if params else b""


def test_no_request_field_stops_the_follower(tmp_path: Path) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    answers = {"n": 0}

    def evaluate(request: TaskRequest) -> TaskAnswer:
        answers["n"] += 1
        if answers["n"] % 3 == 0:
            raise RuntimeError("the evaluator broke")  # an unexpected failure, not a ValidationError
        raise KeyError("region")  # another unexpected one

    follower = OracleRequestFollower(
        sessions,
        FilesystemBlobStore(tmp_path / "blobs"),
        Web3(),
        DirectRequestConfig(operator=OPERATOR, jobs={JOB: "drought-severity"}),
        evaluate=evaluate,
    )
    seq = {"n": 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_PARAMS, st.one_of(st.binary(max_size=40), st.just(b"")), st.booleans())
    def run(params: dict[str, Any], junk: bytes, use_junk: bool) -> None:
        seq["n"] += 1
        req = OracleRequestLog(
            spec_id=JOB,
            requester="0x" + "11" * 20,
            request_id=seq["n"].to_bytes(32, "big"),
            payment=10**18,
            callback_address="0x" + "22" * 20,
            callback_function_id=b"\xaa\xbb\xcc\xdd",
            expiration=NOW + 300,
            data_version=2,
            data=junk if use_junk else _cbor_pairs(params),
            block_number=seq["n"],
            tx_hash="0x" + f"{seq['n']:064x}",
            log_index=0,
        )
        handled = follower.handle_request(req, now=NOW)
        assert handled.outcome in ("rejected", "queued"), handled
        again = follower.handle_request(req, now=NOW)  # a replayed log changes nothing
        assert again.outcome == "duplicate"

    run()
    with sessions() as s:
        refused = int(s.scalar(select(func.count()).select_from(Reject)) or 0)
        queued = int(s.scalar(select(func.count()).select_from(OutboxRow)) or 0)
        reasons = set(s.scalars(select(Reject.reason)))
    assert refused + queued == seq["n"]  # every request left a trace
    assert "internal_error" in reasons  # the evaluator's own failures were reached and survived
    assert {"bad_times", "bad_request_data"} <= reasons
    assert answers["n"] > 0
