"""Set up direct requests on a deployed Chainlink Operator: authorise the oracle's transmitter to fulfil,
and name one job id per task.

Job ids are deterministic (``keccak256("parametric-oracle/<task>")``), so every oracle node and every
consumer contract agree on them without a registry; ``ORACLE_CHAINLINK_JOBS`` holds the returned mapping as
JSON (``{"0x<64 hex>": "<task>"}``, see :func:`parse_jobs`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from oracle.chain.client import transact, translate_errors
from oracle.chain.deploy import Deployment
from oracle.chainlink.tasks import TASKS
from oracle.errors import ConfigError

JOB_ID_PREFIX = "parametric-oracle/"


def job_id_for(task: str) -> bytes:
    """The 32-byte job (spec) id of ``task``; ``ConfigError`` for an unknown task."""
    if task not in TASKS:
        raise ConfigError(f"unknown Chainlink task {task!r}; expected one of {', '.join(TASKS)}")
    return keccak(text=JOB_ID_PREFIX + task)


def setup_direct_requests(
    w3: Web3,
    deployment: Deployment,
    *,
    deployer: LocalAccount,
    transmitter_address: str,
    tasks: Iterable[str] = TASKS,
) -> dict[str, str]:
    """Authorise ``transmitter_address`` on the deployment's ``Operator`` (keeping senders already
    authorised) and return ``{"0x<job id>": task}``.

    ``deployer`` must own the Operator (or be an authorised sender). Idempotent. Raises ``NotFound`` when the
    deployment has no Operator, ``ConfigError`` for an unknown task, ``ChainError``/``RevertError``.
    """
    jobs = {"0x" + job_id_for(t).hex(): t for t in tasks}
    operator = deployment.contract(w3, "Operator")
    transmitter = to_checksum_address(transmitter_address)
    with translate_errors("read the Operator's authorised senders"):
        current = [to_checksum_address(a) for a in operator.functions.getAuthorizedSenders().call()]
    if transmitter not in current:
        # setAuthorizedSenders replaces the whole list, so pass the existing senders along.
        call = operator.functions.setAuthorizedSenders([*current, transmitter])
        transact(w3, call, sender=deployer)
    return jobs


def parse_jobs(text: str | Mapping[str, str]) -> dict[bytes, str]:
    """``ORACLE_CHAINLINK_JOBS`` (JSON text or a mapping) as ``{job id bytes: task}``; ``ConfigError``
    naming the problem when it is not ``{"0x<64 hex>": "<known task>"}``."""
    try:
        raw = json.loads(text) if isinstance(text, str) else dict(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"ORACLE_CHAINLINK_JOBS is not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError("ORACLE_CHAINLINK_JOBS must be a JSON object of job id -> task")
    jobs: dict[bytes, str] = {}
    for key, task in raw.items():
        hex_part = str(key).removeprefix("0x")
        try:
            job = bytes.fromhex(hex_part)
        except ValueError:
            job = b""
        if len(job) != 32:
            raise ConfigError(f"ORACLE_CHAINLINK_JOBS: job id {key!r} must be 32 bytes of hex")
        if task not in TASKS:
            raise ConfigError(f"ORACLE_CHAINLINK_JOBS: unknown task {task!r} for job {key}")
        jobs[job] = str(task)
    return jobs
