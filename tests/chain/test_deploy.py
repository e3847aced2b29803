"""deploy_all / Deployment records, including Chainlink's own LinkToken and Operator from node_modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from oracle.chain.client import transact
from oracle.chain.deploy import Deployment, deploy_all
from oracle.errors import ConfigError, NotFound
from tests.fixtures.chain import Accounts

pytestmark = pytest.mark.chain


def test_deploy_all_with_chainlink_contracts(w3: Web3, accounts: Accounts, tmp_path: Path) -> None:
    owner = accounts.deployer
    signers = [accounts.relayer.address, accounts.stranger.address]
    dep = deploy_all(w3, deployer=owner, signers=signers, threshold=2, pool_funding=123 * 10**6)
    assert set(dep.addresses) == {
        "TestStablecoin",
        "OracleRouter",
        "DroughtInsurancePool",
        "ColdChainEscrow",
        "LinkToken",
        "Operator",
    }
    for address in dep.addresses.values():
        assert len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0
    router = dep.contract(w3, "OracleRouter")
    assert sorted(router.functions.signers().call()) == sorted(signers)
    assert router.functions.threshold().call() == 2
    assert router.functions.owner().call() == owner.address
    coin = dep.contract(w3, "TestStablecoin")
    assert coin.functions.balanceOf(dep.address("DroughtInsurancePool")).call() == 123 * 10**6
    assert coin.functions.decimals().call() == 6
    operator = dep.contract(w3, "Operator")
    assert operator.functions.owner().call() == owner.address
    assert operator.functions.getChainlinkToken().call() == dep.address("LinkToken")
    link = dep.contract(w3, "LinkToken")
    transact(w3, link.functions.grantMintRole(owner.address), sender=owner)
    transact(w3, link.functions.mint(accounts.buyer.address, 10**18), sender=owner)
    assert link.functions.balanceOf(accounts.buyer.address).call() == 10**18

    path = tmp_path / "deployment.json"
    dep.save(path)
    assert Deployment.load(path) == dep
    assert dep.chain_id == w3.eth.chain_id


def test_bad_records_and_arguments_are_refused(w3: Web3, accounts: Accounts, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Deployment.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"chainId": 1}')
    with pytest.raises(ConfigError, match="malformed"):
        Deployment.load(broken)
    with pytest.raises(ConfigError, match="threshold"):
        deploy_all(w3, deployer=accounts.deployer, signers=[accounts.relayer.address], threshold=2)
    with pytest.raises(NotFound):
        Deployment(chain_id=1, block=0, deployer=accounts.deployer.address).address("OracleRouter")
