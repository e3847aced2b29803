"""Deploy the contract set and record where it lives.

``deploy_all`` deploys TestStablecoin, OracleRouter (signer set, threshold), DroughtInsurancePool (funded
with test stablecoin), ColdChainEscrow and, unless disabled, Chainlink's LinkToken and Operator.
``deploy_feed`` adds a DroughtIndexFeed for one region later. ``Deployment`` saves to / loads from JSON.
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
from oracle.errors import ChainError, ConfigError, NotFound

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract import Contract

#: 1,000,000 tUSD (6 decimals): the pool's starting capital on a local chain.
DEFAULT_POOL_FUNDING = 1_000_000 * 10**6
#: The router's model timelock (seconds) armed by ``deploy_all``: 48 h between scheduling a model and its use.
DEFAULT_MODEL_DELAY = 48 * 3600


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
) -> Deployment:
    """Deploy the full local contract set; the deployer owns the router, pool and stablecoin, and the
    router approves the pool and the escrow as consumers.

    ``models`` are (report kind, 32-byte model id) pairs the router accepts from the start: approved
    while its timelock is still unarmed, after which ``model_delay`` seconds arm it (0 leaves it unarmed).

    ``pool_funding`` (tUSD base units, 6 decimals) is minted to the pool. With ``chainlink`` also deploys
    Chainlink's LinkToken and an Operator owned by the deployer.
    """
    with translate_errors("read chain state"):
        chain_id = w3.eth.chain_id
    coin = deploy_contract(w3, "TestStablecoin", deployer=deployer)
    router = deploy_router(w3, deployer=deployer, signers=signers, threshold=threshold)
    pool = deploy_contract(w3, "DroughtInsurancePool", router.address, coin.address, deployer=deployer)
    escrow = deploy_contract(w3, "ColdChainEscrow", router.address, deployer=deployer)
    for consumer in (pool, escrow):
        transact(w3, router.functions.setConsumerApproval(consumer.address, True), sender=deployer)
    for kind, model_id in models:
        transact(w3, router.functions.scheduleModel(kind, model_id, bytes(32)), sender=deployer)
    if model_delay:
        transact(w3, router.functions.setModelDelay(model_delay), sender=deployer)
    if pool_funding:
        transact(w3, coin.functions.mint(pool.address, pool_funding), sender=deployer)
    addresses = {
        "TestStablecoin": coin.address,
        "OracleRouter": router.address,
        "DroughtInsurancePool": pool.address,
        "ColdChainEscrow": escrow.address,
    }
    if chainlink:
        link = deploy_contract(w3, "LinkToken", deployer=deployer)
        operator = deploy_contract(w3, "Operator", link.address, deployer.address, deployer=deployer)
        addresses |= {"LinkToken": link.address, "Operator": operator.address}
    with translate_errors("read chain state"):
        block = w3.eth.block_number
    return Deployment(chain_id=chain_id, block=block, deployer=deployer.address, addresses=addresses)


def feed_name(region_subject: bytes) -> str:
    """The role name of a region's feed in ``Deployment.addresses``."""
    return f"DroughtIndexFeed:0x{region_subject.hex()}"


def deploy_feed(
    w3: Web3, deployment: Deployment, *, deployer: LocalAccount, region_subject: bytes, description: str
) -> Deployment:
    """Deploy a DroughtIndexFeed for ``region_subject``, approve it on the router and subscribe it.

    ``deployer`` must own the router (approving consumers is owner-only). Returns the deployment with the
    feed added under ``feed_name(region_subject)``.
    """
    if len(region_subject) != 32:
        raise ConfigError("region subject must be 32 bytes")
    feed = deploy_contract(
        w3,
        "DroughtIndexFeed",
        deployment.address("OracleRouter"),
        region_subject,
        description,
        deployer=deployer,
    )
    router = deployment.contract(w3, "OracleRouter")
    transact(w3, router.functions.setConsumerApproval(feed.address, True), sender=deployer)
    transact(w3, feed.functions.subscribe(), sender=deployer)
    return deployment.with_address(feed_name(region_subject), feed.address)
