"""Decoding the parameters of a Chainlink direct request.

``ChainlinkClient`` writes a request's parameters as CBOR key/value pairs *without* the map header (the
"diet" CBOR of ``Chainlink.Request``); the Operator emits them in ``OracleRequest.data``. Wrapping the
bytes in an indefinite-length map (``0xbf`` … ``0xff``) makes them a standard CBOR map that cbor2 reads.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from oracle.errors import ValidationError

#: Requests are a handful of short strings and numbers; anything this large is not ours.
MAX_REQUEST_BYTES = 4_096


def decode_request_data(data: bytes) -> dict[str, Any]:
    """The request's parameters as a dict with string keys.

    Raises ``ValidationError`` (reason ``bad_request_data``) for oversize, malformed or non-map CBOR, or
    non-string keys. Byte strings stay ``bytes``; integers of any size stay ``int``.
    """
    if len(data) > MAX_REQUEST_BYTES:
        raise ValidationError(
            f"request data is {len(data)} bytes (at most {MAX_REQUEST_BYTES})", reason="bad_request_data"
        )
    wrapped = b"\xbf" + bytes(data) + b"\xff"
    stream = io.BytesIO(wrapped)
    try:
        decoded = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
        raise ValidationError(
            f"request data is not CBOR key/value pairs: {e}", reason="bad_request_data"
        ) from None
    if stream.tell() != len(wrapped):
        # Trailing bytes mean the pairs closed the map early: not what ChainlinkClient writes.
        raise ValidationError("request data has bytes after its key/value pairs", reason="bad_request_data")
    if not isinstance(decoded, dict) or not all(isinstance(k, str) for k in decoded):
        raise ValidationError("request data keys must be text strings", reason="bad_request_data")
    return dict(decoded)


def encode_request_data(params: dict[str, Any]) -> bytes:
    """The inverse, for tests and tools: CBOR pairs without the map header, as ChainlinkClient writes."""
    whole = cbor2.dumps(params, canonical=False)
    # A definite-length map header: one byte up to 23 pairs, then 1/2/... extra bytes; strip it.
    n = len(params)
    header = 1 if n < 24 else 2 if n < 256 else 3 if n < 65_536 else 5
    return whole[header:]
