"""web3 at the boundary: connect with a timeout, sign / broadcast / await transactions, and turn web3's
many exceptions into ``ChainError`` / ``RevertError`` with decoded revert reasons.

Also the router's signature wire format (``encode_signatures``): 64-byte EIP-2098 compact signatures,
concatenated, ordered by ascending signer address.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3 import exceptions as w3e

from oracle.chain.artifacts import artifact_names, load_artifact
from oracle.errors import ChainError, NotFound, RevertError, ValidationError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract.contract import ContractConstructor, ContractFunction
    from web3.types import TxReceipt

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def connect(rpc_url: str, *, timeout: float = 10.0) -> Web3:
    """A Web3 on ``rpc_url`` whose every request times out after ``timeout`` seconds.

    Raises ``ChainError`` when the endpoint does not answer ``eth_chainId``.
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    with translate_errors(f"connect to {rpc_url}"):
        w3.eth.chain_id  # noqa: B018 -- one round trip proves the endpoint answers
    return w3


@functools.cache
def _error_abis() -> dict[bytes, tuple[str, list[str]]]:
    """Custom-error selector -> (name, argument types), over every compiled artifact."""
    table: dict[bytes, tuple[str, list[str]]] = {}
    try:
        names = artifact_names()
    except NotFound:
        return table
    for name in names:
        for entry in load_artifact(name).abi:
            if entry.get("type") != "error":
                continue
            types = [_abi_type(i) for i in entry["inputs"]]
            signature = f"{entry['name']}({','.join(types)})"
            table[function_signature_to_4byte_selector(signature)] = (entry["name"], types)
    return table


def _abi_type(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


def decode_revert(data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Decode revert data into (reason, args): a custom error's name, an ``Error(string)`` message,
    ``Panic(0x..)`` or ``"unknown(0x..)"``; ``("reverted", ())`` when the data is empty."""
    if not data:
        return "reverted", ()
    selector, body = data[:4], data[4:]
    try:
        if selector == ERROR_STRING_SELECTOR:
            (msg,) = abi_decode(["string"], body)
            return str(msg), ()
        if selector == PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], body)
            return f"Panic(0x{code:02x})", (code,)
        known = _error_abis().get(selector)
        if known is not None:
            name, types = known
            return name, tuple(abi_decode(types, body))
    except Exception:  # noqa: BLE001 -- malformed revert data must not hide the revert itself
        return f"unknown(0x{data.hex()})", ()
    return f"unknown(0x{data.hex()})", ()


def _revert_data(exc: Exception) -> bytes | None:
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Re-raise web3/requests failures inside the block as ``RevertError`` or ``ChainError``.

    ``action`` names what was attempted; it appears in the message (never pass keys or raw txs).
    """
    try:
        yield
    except (w3e.ContractLogicError, w3e.ContractPanicError) as e:
        data = _revert_data(e)
        if data is None:
            reason = str(getattr(e, "message", None) or e)
            raise RevertError(f"{action} reverted: {reason}", reason=reason) from e
        name, args = decode_revert(data)
        detail = f"{name}{args}" if args else name
        raise RevertError(f"{action} reverted: {detail}", reason=name) from e
    except w3e.TimeExhausted as e:
        raise ChainError(f"{action}: timed out waiting for the transaction") from e
    except w3e.Web3RPCError as e:
        raise ChainError(f"{action}: RPC error: {e.message}") from e
    except (requests.RequestException, ConnectionError, TimeoutError) as e:
        raise ChainError(f"{action}: chain RPC unreachable ({type(e).__name__})") from e
    except w3e.Web3Exception as e:
        raise ChainError(f"{action}: {e}") from e


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction ready to broadcast. Persist ``raw`` before sending: re-sending the same bytes
    is safe (same hash, same nonce), so a retry can never execute twice."""

    raw: bytes
    tx_hash: bytes
    sender: str
    nonce: int
    gas: int


def sign_call(
    w3: Web3,
    call: ContractFunction | ContractConstructor,
    *,
    sender: LocalAccount,
    nonce: int | None = None,
    gas: int | None = None,
    value: int = 0,
) -> SignedTx:
    """Build and sign ``call`` without sending it.

    ``nonce`` defaults to the sender's pending count; ``gas`` is estimated when not given, so a call
    that would revert raises ``RevertError`` here. Fees come from the node (EIP-1559 when supported).
    """
    label = f"{getattr(call, 'fn_name', 'constructor')} from {sender.address}"
    with translate_errors(label):
        params: dict[str, Any] = {
            "from": sender.address,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending") if nonce is None else nonce,
            "chainId": w3.eth.chain_id,
            "value": value,
        }
        if gas is not None:
            params["gas"] = gas
        tx: dict[str, Any] = dict(call.build_transaction(params))  # type: ignore[arg-type]
    signed = sender.sign_transaction(tx)
    return SignedTx(
        raw=bytes(signed.raw_transaction),
        tx_hash=bytes(signed.hash),
        sender=sender.address,
        nonce=int(tx["nonce"]),
        gas=int(tx["gas"]),
    )


def broadcast(w3: Web3, raw: bytes) -> bytes:
    """Send a signed transaction's bytes; returns its hash.

    Idempotent: when the node refuses the bytes because it already has that transaction (pending or
    mined, e.g. "already known" or "nonce too low" on a retry), the hash is returned as a success.
    """
    from eth_utils.crypto import keccak

    tx_hash = bytes(keccak(raw))
    try:
        with translate_errors("broadcast transaction"):
            return bytes(w3.eth.send_raw_transaction(raw))
    except ChainError:
        if _node_has_transaction(w3, tx_hash):
            return tx_hash
        raise


def _node_has_transaction(w3: Web3, tx_hash: bytes) -> bool:
    try:
        with translate_errors("look up transaction"):
            w3.eth.get_transaction(HexBytes(tx_hash))
    except ChainError:
        return False
    return True


def wait_receipt(w3: Web3, tx_hash: bytes, *, timeout: float = 30.0) -> TxReceipt:
    """Wait up to ``timeout`` seconds for the receipt; ``ChainError`` on timeout.

    A mined transaction with status 0 is replayed with ``eth_call`` on its parent block to decode the
    reason and raised as ``RevertError`` (``reason`` = custom error name or revert string).
    """
    label = f"transaction 0x{tx_hash.hex()}"
    with translate_errors(label):
        receipt = w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout)
    if receipt["status"] != 1:
        _raise_mined_revert(w3, receipt, label)
    return receipt


def transact(
    w3: Web3,
    call: ContractFunction | ContractConstructor,
    *,
    sender: LocalAccount,
    gas: int | None = None,
    value: int = 0,
    timeout: float = 30.0,
) -> TxReceipt:
    """Sign ``call`` with ``sender``, send it and wait for the receipt (``sign_call`` + ``broadcast`` +
    ``wait_receipt``). Raises ``RevertError`` or ``ChainError``."""
    signed = sign_call(w3, call, sender=sender, gas=gas, value=value)
    return wait_receipt(w3, broadcast(w3, signed.raw), timeout=timeout)


def _raise_mined_revert(w3: Web3, receipt: TxReceipt, label: str) -> None:
    with translate_errors(label):
        tx = w3.eth.get_transaction(receipt["transactionHash"])
        replay = {
            "from": tx["from"],
            "to": tx.get("to"),
            "data": tx["input"],
            "value": tx["value"],
            "gas": tx["gas"],
        }
        # Replay on the state the transaction saw: the parent of the block that mined it.
        w3.eth.call(replay, max(receipt["blockNumber"] - 1, 0))  # type: ignore[arg-type]
    raise RevertError(
        f"{label} reverted in block {receipt['blockNumber']} (out of gas or no reason)", reason="reverted"
    )


def compact_signature(signature: bytes) -> bytes:
    """EIP-2098: a 65-byte r ‖ s ‖ v signature as 64 bytes r ‖ (yParity << 255 | s).

    Raises ``ValidationError`` for a wrong length, a bad v or a high-s (malleable) signature.
    """
    if len(signature) != 65:
        raise ValidationError(f"signature must be 65 bytes, got {len(signature)}", reason="bad_signature")
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28):
        raise ValidationError(f"signature v must be 27 or 28, got {v}", reason="bad_signature")
    if s > SECP256K1_HALF_N:
        raise ValidationError("signature has a high s value", reason="bad_signature")
    return r + (((v - 27) << 255) | s).to_bytes(32, "big")


def encode_signatures(signatures: Iterable[tuple[str, bytes]]) -> bytes:
    """The router's ``signatures`` argument from (signer address, 65-byte signature) pairs.

    Sorted by signer address (the router wants strictly ascending signers); a repeated signer raises
    ``ValidationError`` because the router would reject it.
    """
    ordered = sorted(((int(to_checksum_address(a), 16), sig) for a, sig in signatures), key=lambda p: p[0])
    for (a, _), (b, _) in itertools.pairwise(ordered):
        if a == b:
            raise ValidationError(f"signer 0x{a:040x} signed twice", reason="duplicate_signer")
    return b"".join(compact_signature(sig) for _, sig in ordered)
