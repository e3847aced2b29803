"""Turn revert data into a reason a person can read: ``Error(string)``, ``Panic(uint256)`` or a custom
error from our ABIs, named with its arguments (``StaleEpoch(subject=0x…, epoch=4, latest=5)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode
from eth_utils.crypto import keccak

ERROR_STRING = bytes.fromhex("08c379a0")
PANIC = bytes.fromhex("4e487b71")
PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


def _type_string(item: dict[str, Any]) -> str:
    t = str(item["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in item["components"]) + ")" + t[len("tuple") :]
    return t


def error_selectors(abis: Sequence[Sequence[dict[str, Any]]]) -> dict[bytes, dict[str, Any]]:
    out: dict[bytes, dict[str, Any]] = {}
    for abi in abis:
        for item in abi:
            if item.get("type") == "error":
                sig = f"{item['name']}({','.join(_type_string(i) for i in item.get('inputs', []))})"
                out[keccak(text=sig)[:4]] = item
    return out


def decode_revert(data: bytes, abis: Sequence[Sequence[dict[str, Any]]] = ()) -> str:
    """A readable reason for revert ``data``; falls back to the raw text or hex, never raises."""
    if len(data) >= 4 and data[:4] == ERROR_STRING:
        try:
            (msg,) = decode(["string"], data[4:])
        except Exception:  # noqa: BLE001 - malformed revert data is reported as hex below
            msg = None
        if msg is not None:
            return str(msg)
    if len(data) >= 4 and data[:4] == PANIC:
        try:
            (code,) = decode(["uint256"], data[4:])
        except Exception:  # noqa: BLE001
            code = None
        if code is not None:
            return f"Panic(0x{code:02x}: {PANIC_CODES.get(code, 'unknown')})"
    if len(data) >= 4:
        item = error_selectors(abis).get(data[:4])
        if item is not None:
            inputs = item.get("inputs", [])
            try:
                values = decode([_type_string(i) for i in inputs], data[4:])
                args = ", ".join(f"{i['name']}={_show(v)}" for i, v in zip(inputs, values, strict=True))
                return f"{item['name']}({args})"
            except Exception:  # noqa: BLE001
                return str(item["name"])
    try:
        text = data.decode()
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + data.hex() if data else "reverted without a reason"


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        return "0x" + v.hex()
    return str(v)
