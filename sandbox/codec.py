"""Strict decoding of what the child harness returned.

The bytes come from untrusted code. Only JSON values and tagged numeric NumPy
arrays are accepted; nothing is ever unpickled. NaN and inf pass through here
on purpose: rejecting them is the evaluator's job, with a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np

from evolve.errors import SandboxError

__all__ = ["CandidateValueError", "decode_result"]

_DTYPES = {np.dtype(t).str: np.dtype(t) for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)}
_MAX_DEPTH = 40


class CandidateValueError(SandboxError):
    """The candidate's returned value is malformed (not a sandbox failure)."""


def _decode(node: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CandidateValueError("returned value is nested too deeply")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, depth + 1) for v in node]
    if isinstance(node, dict):
        if set(node) == {"__dict__"} and isinstance(node["__dict__"], dict):
            return {str(k): _decode(v, depth + 1) for k, v in node["__dict__"].items()}
        if set(node) == {"__ndarray__"} and isinstance(node["__ndarray__"], dict):
            return _decode_array(node["__ndarray__"])
    raise CandidateValueError("returned value has an unexpected structure")


def _decode_array(spec: dict[str, Any]) -> np.ndarray:
    dtype = _DTYPES.get(str(spec.get("dtype")))
    shape = spec.get("shape")
    if dtype is None:
        raise CandidateValueError(f"returned array has unsupported dtype {spec.get('dtype')!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) or len(shape) > 32:
        raise CandidateValueError("returned array has an invalid shape")
    try:
        data = base64.b64decode(str(spec.get("data", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CandidateValueError("returned array data is not valid base64") from exc
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise CandidateValueError(f"returned array holds {len(data)} bytes, expected {count * dtype.itemsize} for shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode_result(raw: bytes) -> dict[str, Any]:
    """Decode the harness's JSON envelope: ``{"ok": true, "value": ...}`` or an error.

    Raises:
        CandidateValueError: when the bytes are not a well-formed envelope.
    """
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CandidateValueError("the candidate's result is not valid JSON") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        raise CandidateValueError("the candidate's result envelope is malformed")
    if envelope["ok"]:
        return {"ok": True, "value": _decode(envelope.get("value"), 0)}
    return {
        "ok": False,
        "error": str(envelope.get("error", "unknown error"))[:2000],
        "traceback": str(envelope.get("traceback", ""))[-6000:],
    }
