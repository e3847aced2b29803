"""Pure parts of the Chainlink integration: parameter validation, exact scaling, the CBOR request
encoding ChainlinkClient uses, job ids and ``ORACLE_CHAINLINK_JOBS`` parsing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from oracle.chainlink.cbor import decode_request_data, encode_request_data
from oracle.chainlink.setup import job_id_for, parse_jobs
from oracle.chainlink.tasks import DEFAULT_TIMES, TaskRequest, parse_task, scaled
from oracle.errors import ConfigError, ValidationError


def test_parse_task_defaults_and_normalises() -> None:
    assert parse_task({"task": "drought-severity", "region": " dry ", "period": "2026-06"}) == TaskRequest(
        task="drought-severity", times=DEFAULT_TIMES, region="dry", period="2026-06"
    )
    assert parse_task({"task": "coldchain-breach", "shipment": "S-1", "times": "100"}).times == 100


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, "unknown_task"),
        ({"task": "drought-severity", "region": "dry"}, "missing_period"),
        ({"task": "drought-severity", "region": 7, "period": "2026-06"}, "missing_region"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-06-01"}, "bad_period"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-06", "times": True}, "bad_times"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-06", "times": -5}, "bad_times"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-06", "times": 10**19}, "bad_times"),
        ({"task": "coldchain-breach", "shipment": "x" * 121}, "bad_shipment"),
    ],
)
def test_parse_task_refuses_with_a_reason(params: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_task(params)
    assert e.value.reason == reason


@given(st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(min_value=1, max_value=10**18))
def test_scaled_is_exact_half_up_rounding(score: float, times: int) -> None:
    exact = Decimal(repr(score)) * times
    result = scaled(score, times)
    assert abs(Decimal(result) - exact) <= Decimal("0.5")
    assert Decimal(result) - exact != Decimal("-0.5")  # halves round up, not to even


def test_scaled_examples() -> None:
    assert scaled(3.66263880, 10_000) == 36626
    assert scaled(0.00005, 10_000) == 1
    assert scaled(2.5, 1) == 3


text = st.text(min_size=0, max_size=40)
values = st.one_of(text, st.integers(min_value=-(2**255), max_value=2**256 - 1), st.binary(max_size=40))


@given(st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=30))
def test_cbor_pairs_round_trip(params: dict[str, object]) -> None:
    assert decode_request_data(encode_request_data(params)) == params


def test_cbor_from_chainlink_client_bytes() -> None:
    # The exact bytes DroughtSeverityConsumer's request produced on anvil (region "dry", period, times).
    data = bytes.fromhex("66726567696f6e6364727966706572696f6467323032362d30366574696d6573192710")
    assert decode_request_data(data) == {"region": "dry", "period": "2026-06", "times": 10_000}


@pytest.mark.parametrize("data", [b"\x66reg", b"\xff", b"\x01\x02", b"\x63abc" * 2000])
def test_cbor_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValidationError) as e:
        decode_request_data(data)
    assert e.value.reason == "bad_request_data"


def test_job_ids_are_deterministic_and_parse_back() -> None:
    assert job_id_for("drought-severity") == keccak(text="parametric-oracle/drought-severity")
    assert job_id_for("drought-severity") != job_id_for("coldchain-breach")
    jobs = {"0x" + job_id_for(t).hex(): t for t in ("drought-severity", "coldchain-breach")}
    assert parse_jobs(json.dumps(jobs)) == {job_id_for(t): t for t in jobs.values()}
    with pytest.raises(ConfigError):
        job_id_for("weather")


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"0x12": "drought-severity"}', json.dumps({"0x" + "ab" * 32: "weather"})]
)
def test_bad_jobs_setting_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="ORACLE_CHAINLINK_JOBS"):
        parse_jobs(text)
