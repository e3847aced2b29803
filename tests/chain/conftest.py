"""Registers the chain fixtures for this folder until tests/conftest.py lists tests.fixtures.chain."""

from tests.fixtures.chain import accounts, anvil, chain, deployment, oracle_keys, w3

__all__ = ["accounts", "anvil", "chain", "deployment", "oracle_keys", "w3"]
