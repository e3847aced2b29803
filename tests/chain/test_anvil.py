"""The anvil launcher and the web3 client boundary, against real anvil processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from web3 import Web3

from oracle.chain.anvil import DEFAULT_CHAIN_ID, dev_accounts, free_port, start_anvil
from oracle.chain.client import (
    broadcast,
    compact_signature,
    connect,
    decode_revert,
    encode_signatures,
    sign_call,
    transact,
    wait_receipt,
)
from oracle.chain.deploy import Deployment, deploy_all
from oracle.errors import ChainError, RevertError, ToolError, ValidationError

pytestmark = pytest.mark.chain


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    deployer = dev_accounts(1)[0]
    record = tmp_path / "deployment.json"
    with start_anvil(state_file=state) as first:
        w3 = connect(first.url)
        dep = deploy_all(w3, deployer=deployer, signers=[deployer.address], threshold=1, chainlink=False)
        dep.save(record)
        supply = dep.contract(w3, "TestStablecoin").functions.totalSupply().call()
        block = w3.eth.block_number
    assert not first.running
    assert state.stat().st_size > 0
    with start_anvil(state_file=state) as second:
        w3 = connect(second.url)
        again = Deployment.load(record)
        assert again == dep
        assert w3.eth.block_number >= block
        assert again.contract(w3, "TestStablecoin").functions.totalSupply().call() == supply
        assert w3.eth.chain_id == DEFAULT_CHAIN_ID


def test_interval_mining_and_fixed_port() -> None:
    port = free_port()
    with start_anvil(port=port, block_time=0.2) as node:
        assert node.port == port
        assert node.url.endswith(f":{port}")
        w3 = connect(node.url)
        start = w3.eth.block_number
        time.sleep(0.7)
        assert w3.eth.block_number > start


def test_missing_anvil_is_a_clear_tool_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORACLE_ANVIL_BIN", str(tmp_path / "no-anvil-here"))
    with pytest.raises(ToolError, match="ORACLE_ANVIL_BIN"):
        start_anvil()


def test_unreachable_rpc_is_a_chain_error() -> None:
    with pytest.raises(ChainError, match="unreachable"):
        connect(f"http://127.0.0.1:{free_port()}", timeout=1.0)


def test_transfer_without_funds_is_a_revert_error_with_the_reason(w3: Web3) -> None:
    deployer, poor = dev_accounts(2)
    dep = deploy_all(w3, deployer=deployer, signers=[deployer.address], threshold=1, chainlink=False)
    coin = dep.contract(w3, "TestStablecoin")
    with pytest.raises(RevertError) as e:
        transact(w3, coin.functions.transfer(deployer.address, 1), sender=poor)
    assert e.value.reason == "ERC20: transfer amount exceeds balance"
    # Sent anyway with fixed gas: mined with status 0, then decoded by replaying the call.
    with pytest.raises(RevertError) as e:
        transact(w3, coin.functions.transfer(deployer.address, 1), sender=poor, gas=100_000)
    assert e.value.reason == "ERC20: transfer amount exceeds balance"


def test_decode_revert_knows_custom_errors_strings_and_panics() -> None:
    stale = function_signature_to_4byte_selector("StaleEpoch(bytes32,uint64,uint64)") + encode(
        ["bytes32", "uint64", "uint64"], [b"\x01" * 32, 5, 4]
    )
    assert decode_revert(stale) == ("StaleEpoch", (b"\x01" * 32, 5, 4))
    assert decode_revert(bytes.fromhex("08c379a0") + encode(["string"], ["nope"])) == ("nope", ())
    assert decode_revert(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])) == ("Panic(0x11)", (0x11,))
    assert decode_revert(b"") == ("reverted", ())
    assert decode_revert(b"\xde\xad\xbe\xef")[0] == "unknown(0xdeadbeef)"


def test_signature_encoding_sorts_signers_and_refuses_bad_input() -> None:
    keys = [Account.from_key(keccak(f"enc-{i}".encode())) for i in range(3)]
    digest = keccak(b"message")
    sigs = [(k.address, bytes(k.unsafe_sign_hash(digest).signature)) for k in keys]
    encoded = encode_signatures(reversed(sigs))
    assert len(encoded) == 3 * 64
    order = sorted(range(3), key=lambda i: int(keys[i].address, 16))
    assert encoded == b"".join(compact_signature(sigs[i][1]) for i in order)
    with pytest.raises(ValidationError) as e:
        encode_signatures([sigs[0], sigs[0]])
    assert e.value.reason == "duplicate_signer"
    with pytest.raises(ValidationError):
        compact_signature(b"\x00" * 64)
    high_s = sigs[0][1][:32] + (2**256 - 1).to_bytes(32, "big") + b"\x1b"
    with pytest.raises(ValidationError, match="high s"):
        compact_signature(high_s)


def test_signed_bytes_can_be_resent_and_execute_once(w3: Web3) -> None:
    deployer, receiver = dev_accounts(2)
    dep = deploy_all(w3, deployer=deployer, signers=[deployer.address], threshold=1, chainlink=False)
    coin = dep.contract(w3, "TestStablecoin")
    signed = sign_call(w3, coin.functions.mint(receiver.address, 7), sender=deployer)
    before = coin.functions.balanceOf(receiver.address).call()
    assert broadcast(w3, signed.raw) == signed.tx_hash
    receipt = wait_receipt(w3, signed.tx_hash)
    assert receipt["status"] == 1
    # A retry after the transaction was mined re-sends the same bytes: same hash, no second mint.
    assert broadcast(w3, signed.raw) == signed.tx_hash
    assert coin.functions.balanceOf(receiver.address).call() - before == 7
    stale = sign_call(w3, coin.functions.mint(receiver.address, 1), sender=deployer, nonce=signed.nonce)
    with pytest.raises(ChainError, match="nonce"):
        broadcast(w3, stale.raw)
