"""The embedded chain for development: a local anvil with the contracts deployed.

``oracle chain up`` leaves anvil running detached (pid and URL in ``<data_dir>/chain/``) and writes the
deployment record; ``oracle chain down`` stops it. ``oracle run`` reuses a chain that is up, or starts
its own for the life of the process. anvil keeps its state in ``<data_dir>/chain/anvil-state.json``
across restarts, so the deployment record stays valid.

Dev keys are generated into the data dir at first start, never committed: the signer's (encrypted
keystore, see :mod:`oracle.signer.keys`) and the transmitter's (pays gas for the outbox; funded from
anvil's well-known dev account 0, which deploys the contracts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from oracle.config import Settings
from oracle.errors import ConfigError

log = logging.getLogger(__name__)

TRANSMITTER_FUNDING_WEI = 1_000 * 10**18


@dataclass(frozen=True)
class LocalChain:
    rpc_url: str
    chain_id: int
    addresses: dict[str, str]
    pid: int | None


def chain_dir(settings: Settings) -> Path:
    d = settings.data_dir / "chain"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _rpc_answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        r = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=2
        )
        return bool(r.json()["result"])
    return False


def running_chain_url(settings: Settings) -> str | None:
    """The URL of a local anvil started by ``oracle chain up`` that still answers, if any."""
    url_file = chain_dir(settings) / "rpc_url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if _rpc_answers(url):
            return url
    return None


def load_or_create_transmitter(settings: Settings) -> LocalAccount:
    """The transmitter account: from ``<data_dir>/transmitter`` (keystore + passphrase), created in dev."""
    d = settings.data_dir / "transmitter"
    keystore, passphrase_file = d / "keystore.json", d / "passphrase"
    if not keystore.exists():
        if settings.env != "dev":
            raise ConfigError(
                f"no transmitter keystore at {keystore}; create one with eth-account (keystore v3)"
            )
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        account = Account.create()
        passphrase = secrets.token_urlsafe(32)
        _write_private(passphrase_file, passphrase + "\n")
        _write_private(keystore, json.dumps(Account.encrypt(account.key, passphrase)))
        log.info("generated dev transmitter address=%s", account.address)
        return account  # type: ignore[no-any-return]
    try:
        key = Account.decrypt(json.loads(keystore.read_text()), passphrase_file.read_text().strip())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot open the transmitter keystore {keystore}: {e.__class__.__name__}"
        ) from None
    return Account.from_key(key)  # type: ignore[no-any-return]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def signer_address(settings: Settings) -> str:
    """The dev signer's address, generating its keystore on first use."""
    from oracle.signer.keys import KEYSTORE_FILE, PASSPHRASE_FILE, generate_keystore, new_passphrase

    d = settings.data_dir / "signer"
    keystore = d / KEYSTORE_FILE
    if not keystore.exists():
        # Development only (make run): the dev signer keeps its passphrase beside the keystore.
        return generate_keystore(d, passphrase=new_passphrase(), passphrase_file=d / PASSPHRASE_FILE).address
    return "0x" + str(json.loads(keystore.read_text())["address"]).removeprefix("0x")


def shipped_model_approvals() -> list[tuple[int, bytes]]:
    """(report kind, model id) of every model artifact shipped in ``models/artifacts``: what a fresh local
    deployment's router accepts from the start (later changes go through its timelock)."""
    from models.paths import COLDCHAIN_MODEL_DIR, DROUGHT_MODEL_DIR
    from models.registry import list_models
    from oracle.reports import ReportKind

    pairs = [
        (int(kind), bytes.fromhex(card.model_id_hex))
        for kind, directory in (
            (ReportKind.DROUGHT_SEVERITY, DROUGHT_MODEL_DIR),
            (ReportKind.COLDCHAIN_VERDICT, COLDCHAIN_MODEL_DIR),
        )
        for card in list_models(directory)
    ]
    return sorted(set(pairs))


def ensure_deployment(settings: Settings, rpc_url: str) -> LocalChain:
    """Deploy the contracts unless the record in the data dir matches a live deployment on this chain."""
    from web3 import Web3

    from oracle.chain.anvil import dev_accounts
    from oracle.chain.client import connect
    from oracle.chain.deploy import Deployment, deploy_all

    w3 = connect(rpc_url)
    chain_id = int(w3.eth.chain_id)
    record = settings.deployment_file
    if record.exists():
        dep = Deployment.load(record)
        if (
            dep.chain_id == chain_id
            and len(w3.eth.get_code(Web3.to_checksum_address(dep.address("OracleRouter")))) > 0
        ):
            return LocalChain(rpc_url, chain_id, dict(dep.addresses), None)
        log.info("deployment record %s does not match the chain at %s; redeploying", record, rpc_url)
    deployer = dev_accounts(1)[0]
    dep = deploy_all(
        w3,
        deployer=deployer,
        signers=[signer_address(settings)],
        threshold=1,
        models=shipped_model_approvals(),
    )
    transmitter = load_or_create_transmitter(settings)
    if w3.eth.get_balance(transmitter.address) < TRANSMITTER_FUNDING_WEI // 2:
        transact_value(w3, deployer, transmitter.address, TRANSMITTER_FUNDING_WEI)
    dep.save(record)
    from oracle.chainlink.setup import setup_direct_requests

    jobs = setup_direct_requests(w3, dep, deployer=deployer, transmitter_address=transmitter.address)
    (chain_dir(settings) / "chainlink-jobs.json").write_text(
        json.dumps(jobs, indent=2, sort_keys=True) + "\n"
    )
    return LocalChain(rpc_url, chain_id, dict(dep.addresses), None)


def chainlink_jobs(settings: Settings) -> dict[str, str]:
    """Job id → task: ``ORACLE_CHAINLINK_JOBS``, or what `oracle chain up` registered locally."""
    if settings.chainlink_jobs:
        try:
            jobs = json.loads(settings.chainlink_jobs)
        except ValueError:
            raise ConfigError('ORACLE_CHAINLINK_JOBS: expected JSON {"0x<job id>": "<task>"}') from None
        return {str(k): str(v) for k, v in dict(jobs).items()}
    path = settings.data_dir / "chain" / "chainlink-jobs.json"
    return {str(k): str(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def transact_value(w3: Web3, sender: LocalAccount, to: str, value: int) -> None:
    """Send ``value`` wei from ``sender`` to ``to`` and wait for the receipt."""
    tx = {
        "from": sender.address,
        "to": Web3.to_checksum_address(to),
        "value": value,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": w3.eth.chain_id,
        "gas": 21_000,
        "maxFeePerGas": 2 * int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0) + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30)


def chain_up(settings: Settings, *, port: int | None = None) -> LocalChain:
    """Start a detached anvil (or reuse the running one) and make sure the contracts are deployed."""
    from oracle.chain.anvil import start_anvil

    url = running_chain_url(settings)
    pid = None
    if url is None:
        d = chain_dir(settings)
        anvil = start_anvil(port=port, state_file=d / "anvil-state.json")
        url, pid = anvil.url, anvil._proc.pid
        (d / "rpc_url").write_text(url + "\n")
        (d / "anvil.pid").write_text(f"{pid}\n")
    chain = ensure_deployment(settings, url)
    return LocalChain(chain.rpc_url, chain.chain_id, chain.addresses, pid)


def chain_down(settings: Settings) -> bool:
    """Stop the anvil started by ``chain_up`` (SIGINT, so it writes its state). True if one was running."""
    d = chain_dir(settings)
    pid_file = d / "anvil.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    (d / "rpc_url").unlink(missing_ok=True)
    return True
