"""Helpers for the liveness and dispute tests of DroughtInsurancePool (issue 14)."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from tests.chain.pool_kit import USD, create_policy
from tests.fixtures.chain import ChainKit

BOND = 50 * USD
REWARD = 20 * USD
LIVENESS = 3_600
ANSWER = 7_200


def policy_with_window(chain: ChainKit, window: int = LIVENESS, **over: Any) -> int:
    """A policy (``create_policy``) whose product waits ``window`` seconds before a report pays it."""
    policy = create_policy(chain, **over)
    product = int(chain.pool.functions.policy(policy).call()[2])
    chain.send(chain.pool.functions.setLiveness(product, window))
    return policy


def dispute_terms(chain: ChainKit, bond: int = BOND, reward: int = REWARD, answer: int = ANSWER) -> None:
    chain.send(chain.pool.functions.setDisputeTerms(bond, reward, answer))


def fund_watcher(chain: ChainKit, watcher: str, amount: int = BOND) -> None:
    chain.send(chain.coin.functions.mint(watcher, amount))


def file_dispute(chain: ChainKit, watcher: LocalAccount, subject: bytes, epoch: int, cid: str) -> Any:
    """Approve the bond and dispute (subject, epoch) as ``watcher``; returns the dispute's receipt."""
    bond = int(chain.pool.functions.disputeBond().call())
    chain.send(chain.coin.functions.approve(chain.pool.address, bond), watcher)
    return chain.send(chain.pool.functions.dispute(subject, epoch, cid), watcher)
