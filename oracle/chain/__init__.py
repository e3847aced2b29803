"""The chain boundary: local anvil, compiled artifacts, deployments and a web3 client with one error family.

Modules: ``anvil`` (start/stop a local chain), ``artifacts`` (ABI and bytecode from ``contracts/build``),
``client`` (connect, send transactions, translate web3 errors into ``ChainError``/``RevertError``,
router signature encoding), ``deploy`` (deploy the contract set and save/load its addresses).
"""
