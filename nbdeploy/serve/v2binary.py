"""The binary tensor data extension of the Open Inference Protocol (KServe V2, Triton).

A request may carry tensors as raw bytes after its JSON header: the header's length is
in ``Inference-Header-Content-Length``, and each input sent that way has
``parameters.binary_data_size`` instead of ``data``, its bytes following those of the
inputs before it. Values are little-endian, row major, without padding; BOOL is one
byte (0 or 1), and each BYTES element is a 4-byte little-endian length and its bytes.
Outputs are sent the same way when the request asks (``binary_data`` on a requested
output, or ``binary_data_output`` for all). Triton's Python and C++ clients send and ask
for binary tensors by default.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .errors import RequestError

#: the numpy dtype of each fixed-size V2 datatype, little-endian
DTYPES = {
    "BOOL": np.dtype("?"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def header_length(value: bytes | None, body_size: int) -> int | None:
    """The JSON header's size from ``Inference-Header-Content-Length`` (None: no binary data)."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise RequestError(400, f"Inference-Header-Content-Length must be a number of bytes, not {value!r}")
    n = int(text)
    if n > body_size:
        raise RequestError(400, f"Inference-Header-Content-Length is {n} but the body has only {body_size} bytes")
    return n


def decode(raw: bytes, datatype: str, count: int, where: str) -> list[Any]:
    """The ``count`` values of one input tensor's bytes, as Python values."""
    if datatype == "BYTES":
        return _decode_bytes(raw, count, where)
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise RequestError(400, f"{where}: datatype {datatype} cannot be sent as binary data")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            400, f"{where}: {count} {datatype} values take {count * dtype.itemsize} bytes; "
                 f"binary_data_size is {len(raw)}"
        )
    if datatype == "BOOL":
        bad = set(raw) - {0, 1}
        if bad:
            raise RequestError(400, f"{where}: a BOOL is the byte 0 or 1, got {min(bad)}")
    return np.frombuffer(raw, dtype=dtype).tolist()


def _decode_bytes(raw: bytes, count: int, where: str) -> list[Any]:
    out: list[Any] = []
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise RequestError(400, f"{where}: BYTES element {len(out)} has a cut-off length prefix")
        (size,) = _LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + size > end:
            raise RequestError(
                400, f"{where}: BYTES element {len(out)} says {size} bytes but only {end - pos} are left"
            )
        chunk = raw[pos:pos + size]
        pos += size
        try:
            out.append(chunk.decode("utf-8"))  # string columns: text, as JSON would have sent it
        except UnicodeDecodeError:
            out.append(chunk)  # raw bytes, for a binary column (validation tells a string column)
    if len(out) != count:
        raise RequestError(400, f"{where}: the shape needs {count} BYTES elements, the binary data has {len(out)}")
    return out


def encode(values: list[Any], datatype: str) -> bytes:
    """One output tensor's values (a flat list) as the extension's bytes."""
    if datatype == "BYTES":
        parts = []
        for v in values:
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(_LENGTH.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.asarray(values, dtype=DTYPES[datatype]).tobytes()


def split_inputs(inputs: list[Any], binary: bytes) -> list[bytes | None]:
    """Each input's slice of the binary data (None for an input sent as JSON), in order."""
    slices: list[bytes | None] = []
    offset = 0
    for i, t in enumerate(inputs):
        params = t.get("parameters") if isinstance(t, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            slices.append(None)
            continue
        name = t.get("name")
        if "data" in t:
            raise RequestError(422, f"inputs[{i}] ({name}) has both data and binary_data_size; send one")
        if type(size) is not int or size < 0:
            raise RequestError(422, f"inputs[{i}] ({name}): binary_data_size must be a number of bytes")
        if offset + size > len(binary):
            raise RequestError(
                422, f"inputs[{i}] ({name}): binary_data_size {size} goes past the end of the binary data "
                     f"({len(binary) - offset} bytes left)"
            )
        slices.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise RequestError(400, f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    return slices
