"""Deploy the contract set and record where it lives.

``deploy_all`` deploys TestStablecoin, OracleRouter (signer set, threshold), DroughtInsurancePool (funded
with test stablecoin), ColdChainEscrow (the shipped cold-chain profiles registered with their file hashes,
see ``oracle.chain.escrow``), any region feeds known at deployment and, unless disabled, Chainlink's
LinkToken and Operator. ``Deployment`` saves to / loads from JSON.

The router's governance timelock (``modelDelay``, 48 h by default) is armed last: everything
``deploy_all`` sets up (consumer approvals, initial models) is scheduled while the delay is still 0 and so
is active at once. Afterwards a new consumer waits the delay, as an operator would on a live chain:
``deploy_feed`` deploys a region feed and schedules its approval, and ``activate_feed`` (anyone, once the
delay has passed) activates the approval and subscribes the feed. Feeds known up front belong in
``deploy_all(feeds=...)`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from oracle.chain.artifacts import load_artifact
from oracle.chain.client import transact, translate_errors
from oracle.chain.escrow import register_profiles
from oracle.errors import ChainError, ConfigError, NotFound

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract import Contract

#: 1,000,000 tUSD (6 decimals): the pool's starting capital on a local chain.
DEFAULT_POOL_FUNDING = 1_000_000 * 10**6
#: The router's governance timelock (seconds) armed by ``deploy_all``: 48 h between scheduling a model,
#: signer, threshold or consumer change and its use.
DEFAULT_MODEL_DELAY = 48 * 3600
#: ``OracleRouter.APPROVE_CONSUMER``: the governance action that approves a consumer.
APPROVE_CONSUMER = 3


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live on one chain. ``addresses`` maps contract role names to checksummed
    addresses: ``TestStablecoin``, ``OracleRouter``, ``DroughtInsurancePool``, ``ColdChainEscrow``,
    optionally ``LinkToken``, ``Operator`` and ``DroughtIndexFeed:<0x region subject>``."""

    chain_id: int
    block: int
    deployer: str
    addresses: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", MappingProxyType(dict(self.addresses)))

    def address(self, name: str) -> str:
        try:
            return self.addresses[name]
        except KeyError:
            raise NotFound(f"deployment has no contract {name!r}") from None

    def contract(self, w3: Web3, name: str) -> Contract:
        """A web3 contract for role ``name``; the ABI comes from the role's contract name."""
        artifact = load_artifact(name.split(":", 1)[0])
        return w3.eth.contract(address=Web3.to_checksum_address(self.address(name)), abi=list(artifact.abi))

    def with_address(self, name: str, address: str) -> Deployment:
        return replace(self, addresses={**self.addresses, name: to_checksum_address(address)})

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "block": self.block,
            "deployer": self.deployer,
            "addresses": dict(sorted(self.addresses.items())),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Deployment:
        try:
            return cls(
                chain_id=int(d["chainId"]),
                block=int(d["block"]),
                deployer=to_checksum_address(d["deployer"]),
                addresses={str(k): to_checksum_address(v) for k, v in d["addresses"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"malformed deployment record: {e}") from e

    def save(self, path: Path) -> None:
        """Write the record as JSON (atomically: write a sibling file, then rename)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a record written by ``save``; ``NotFound`` if missing, ``ConfigError`` if malformed."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(f"no deployment record at {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"deployment record {path} is not JSON: {e}") from e
        return cls.from_json(raw)


def deploy_contract(w3: Web3, name: str, *args: Any, deployer: LocalAccount) -> Contract:
    """Deploy compiled contract ``name`` with constructor ``args``; returns the bound contract."""
    artifact = load_artifact(name)
    if not artifact.deployable:
        raise NotFound(f"{name} has no bytecode (an interface or library?)")
    factory = w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
    receipt = transact(w3, factory.constructor(*args), sender=deployer)
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploying {name} produced no contract address")
    return w3.eth.contract(address=address, abi=list(artifact.abi))


def deploy_router(w3: Web3, *, deployer: LocalAccount, signers: Sequence[str], threshold: int) -> Contract:
    """Deploy an OracleRouter owned by ``deployer`` with ``signers`` and a k-of-n ``threshold``."""
    if not 1 <= threshold <= len(signers):
        raise ConfigError(f"threshold {threshold} must be between 1 and the {len(signers)} signers")
    return deploy_contract(
        w3, "OracleRouter", [to_checksum_address(s) for s in signers], threshold, deployer=deployer
    )


def deploy_all(
    w3: Web3,
    *,
    deployer: LocalAccount,
    signers: Sequence[str],
    threshold: int,
    pool_funding: int = DEFAULT_POOL_FUNDING,
    chainlink: bool = True,
    models: Sequence[tuple[int, bytes]] = (),
    model_delay: int = DEFAULT_MODEL_DELAY,
    feeds: Sequence[tuple[bytes, str]] = (),
) -> Deployment:
    """Deploy the full local contract set; the deployer owns the router, pool and stablecoin, and the
    router approves the pool and the escrow as consumers.

    ``models`` are (report kind, 32-byte model id) pairs the router accepts from the start, and ``feeds``
    (32-byte region subject, description) pairs get a subscribed DroughtIndexFeed each (under
    ``feed_name``): all approved while the router's timelock is still unarmed, after which ``model_delay``
    seconds arm it (0 leaves it unarmed, so later changes apply at once).

    ``pool_funding`` (tUSD base units, 6 decimals) is minted to the pool. With ``chainlink`` also deploys
    Chainlink's LinkToken and an Operator owned by the deployer.
    """
    with translate_errors("read chain state"):
        chain_id = w3.eth.chain_id
    coin = deploy_contract(w3, "TestStablecoin", deployer=deployer)
    router = deploy_router(w3, deployer=deployer, signers=signers, threshold=threshold)
    pool = deploy_contract(w3, "DroughtInsurancePool", router.address, coin.address, deployer=deployer)
    escrow = deploy_contract(w3, "ColdChainEscrow", router.address, deployer=deployer)
    # The shipped cold-chain profiles, each with its file's hash: the escrow takes no other.
    register_profiles(w3, escrow, owner=deployer)
    addresses = {
        "TestStablecoin": coin.address,
        "OracleRouter": router.address,
        "DroughtInsurancePool": pool.address,
        "ColdChainEscrow": escrow.address,
    }
    for consumer in (pool, escrow):
        schedule_consumer_approval(w3, router, consumer.address, owner=deployer)
    for region_subject, description in feeds:
        feed = _deploy_feed_contract(w3, router.address, region_subject, description, deployer=deployer)
        schedule_consumer_approval(w3, router, feed.address, owner=deployer)
        transact(w3, feed.functions.subscribe(), sender=deployer)
        addresses[feed_name(region_subject)] = feed.address
    for kind, model_id in models:
        transact(w3, router.functions.scheduleModel(kind, model_id, bytes(32)), sender=deployer)
    if model_delay:
        transact(w3, router.functions.setModelDelay(model_delay), sender=deployer)
    if pool_funding:
        transact(w3, coin.functions.mint(pool.address, pool_funding), sender=deployer)
    if chainlink:
        link = deploy_contract(w3, "LinkToken", deployer=deployer)
        operator = deploy_contract(w3, "Operator", link.address, deployer.address, deployer=deployer)
        addresses |= {"LinkToken": link.address, "Operator": operator.address}
    with translate_errors("read chain state"):
        block = w3.eth.block_number
    return Deployment(chain_id=chain_id, block=block, deployer=deployer.address, addresses=addresses)


def schedule_consumer_approval(w3: Web3, router: Contract, consumer: str, *, owner: LocalAccount) -> bool:
    """Schedule approving ``consumer`` on ``router`` (``owner`` must own it). True when the approval is
    already in force (the router's timelock is unarmed); otherwise ``activate_consumer_approval`` makes
    it so once ``modelDelay`` seconds have passed."""
    consumer = to_checksum_address(consumer)
    transact(w3, router.functions.scheduleConsumerApproval(consumer), sender=owner)
    with translate_errors("read consumer approval"):
        return bool(router.functions.approvedConsumer(consumer).call())


def activate_consumer_approval(w3: Web3, router: Contract, consumer: str, *, sender: LocalAccount) -> None:
    """Activate the scheduled approval of ``consumer`` (any ``sender``); nothing to do when it is already
    approved. Raises ``RevertError`` (``TimelockNotExpired``) before its time, ``ChangeNotScheduled``
    when no approval was scheduled."""
    consumer = to_checksum_address(consumer)
    with translate_errors("read consumer approval"):
        if router.functions.approvedConsumer(consumer).call():
            return
        change = router.functions.changeId(APPROVE_CONSUMER, consumer).call()
    transact(w3, router.functions.activateGovernance(change), sender=sender)


def feed_name(region_subject: bytes) -> str:
    """The role name of a region's feed in ``Deployment.addresses``."""
    return f"DroughtIndexFeed:0x{region_subject.hex()}"


def _deploy_feed_contract(
    w3: Web3, router: str, region_subject: bytes, description: str, *, deployer: LocalAccount
) -> Contract:
    if len(region_subject) != 32:
        raise ConfigError("region subject must be 32 bytes")
    return deploy_contract(w3, "DroughtIndexFeed", router, region_subject, description, deployer=deployer)


def deploy_feed(
    w3: Web3, deployment: Deployment, *, deployer: LocalAccount, region_subject: bytes, description: str
) -> Deployment:
    """Deploy a DroughtIndexFeed for ``region_subject`` and schedule its approval on the router.

    ``deployer`` must own the router (approving consumers is owner-only). On a router whose timelock is
    unarmed the approval is in force at once and the feed is subscribed here; on an armed router (any
    ``deploy_all`` with a ``model_delay``) the feed receives nothing until ``activate_feed`` runs after
    the delay. Returns the deployment with the feed added under ``feed_name(region_subject)``.
    """
    router = deployment.contract(w3, "OracleRouter")
    feed = _deploy_feed_contract(w3, router.address, region_subject, description, deployer=deployer)
    if schedule_consumer_approval(w3, router, feed.address, owner=deployer):
        transact(w3, feed.functions.subscribe(), sender=deployer)
    return deployment.with_address(feed_name(region_subject), feed.address)


def activate_feed(w3: Web3, deployment: Deployment, *, sender: LocalAccount, region_subject: bytes) -> None:
    """Finish ``deploy_feed`` once the router's timelock has passed (any ``sender``): activate the feed's
    approval and subscribe it. Does nothing for a feed already subscribed; raises ``RevertError``
    (``TimelockNotExpired``) before its time."""
    router = deployment.contract(w3, "OracleRouter")
    feed = deployment.contract(w3, feed_name(region_subject))
    with translate_errors("read feed subscription"):
        if feed.address in router.functions.subscribers(region_subject).call():
            return
    activate_consumer_approval(w3, router, feed.address, sender=sender)
    transact(w3, feed.functions.subscribe(), sender=sender)
