"""Strict, budgeted decoding of what the child harness returned.

The bytes come from untrusted code. Only JSON values and tagged numeric NumPy
arrays are accepted; nothing is ever unpickled. NaN and inf pass through here
on purpose: rejecting them is the evaluator's job, with a message.

Decoding runs in the trusted evaluator process, so it is bounded before it
allocates: a JSON text with more elements than the budget is refused after
three C-speed byte counts (``count_elements``), nesting past the parser's
recursion limit or ``MAX_DEPTH`` is refused, and values are checked in place
(no second copy of the tree). Measured with tracemalloc on CPython 3.11 over
the dearest payloads (``tests/sandbox/test_codec.py``), decoding allocates at
most ``3 x`` the result's byte size (its text, and the strings or array bytes
in it) plus 100 bytes per counted element (a dict entry holding an empty
container is the dearest element, ~96 B). With the defaults (64 MiB of
result bytes, one million elements) one result costs at most ~290 MiB, about
4.5 times its byte cap; 66 MB of ``[[],[],...]``, which used to decode into
3.1 GB, is refused before it allocates.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from typing import Any

import numpy as np

from evolve.errors import SandboxError
from evolve.sandbox.base import SandboxLimits

__all__ = [
    "DEFAULT_RESULT_ELEMENTS", "MAX_DEPTH", "CandidateValueError", "FrameTooLarge", "count_elements", "decode_result", "loads_within",
    "read_frame", "write_frames",
]

_DTYPES = {np.dtype(t).str: np.dtype(t) for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)}
#: Containers deeper than this are refused (the harness encodes at most 32 levels of the value).
MAX_DEPTH = 40
#: Elements one result may hold (see ``count_elements``); large data belongs in a NumPy array, one element.
DEFAULT_RESULT_ELEMENTS = SandboxLimits().result_elements
_MAX_ERROR_CHARS = 2000
_MAX_TRACEBACK_CHARS = 6000


class CandidateValueError(SandboxError):
    """The candidate's returned value is malformed (not a sandbox failure)."""


class FrameTooLarge(SandboxError):  # noqa: N818 - reads as what happened
    """A frame on a blocking channel declared more bytes than its reader accepts."""


def _read_exact(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def read_frame(fd: int, *, limit: int | None = None) -> bytes | None:
    """One frame (a 4-byte big-endian length, then that many bytes) from a blocking ``fd``; None at its end.

    Raises:
        FrameTooLarge: when the frame declares more than ``limit`` bytes (nothing of it is read).
    """
    header = _read_exact(fd, 4)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if limit is not None and size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes, over the {limit} accepted")
    return _read_exact(fd, size)


def write_frames(fd: int, *parts: bytes) -> None:
    """Each of ``parts`` as one frame on a blocking ``fd``, in one write where the pipe takes it."""
    data = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def count_elements(raw: bytes) -> int:
    """An upper bound on the JSON values and containers in ``raw``, at C speed.

    The count of ``[``, ``{`` and ``,`` bytes: every container opens with a
    bracket and every further member follows a comma. It over-counts those
    bytes inside strings (a string full of commas counts each), which only
    makes the budget stricter for such text; it never under-counts.
    """
    return raw.count(b"[") + raw.count(b"{") + raw.count(b",")


def loads_within(raw: bytes, *, max_elements: int, what: str = "the candidate's result") -> Any:
    """Parse UTF-8 JSON bytes after checking their element budget; every failure is one error type.

    Raises:
        CandidateValueError: when the bytes are over ``max_elements`` (see
            ``count_elements``), not UTF-8, not JSON, nested deeper than the
            parser's recursion limit, or too large to decode in the memory
            left (each with a message that names which).
    """
    elements = count_elements(raw)
    if elements > max_elements:
        raise CandidateValueError(
            f"{what} holds about {elements} JSON elements, over the budget of {max_elements}: "
            "return large data as a NumPy array"
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CandidateValueError(f"{what} is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CandidateValueError(f"{what} is not valid JSON: {exc.msg} at byte {exc.pos}") from exc
    except RecursionError as exc:
        raise CandidateValueError(f"{what} is nested too deeply to decode") from exc
    except MemoryError as exc:
        raise CandidateValueError(f"decoding {what} exceeded the evaluator's memory bound: return less data") from exc
    except ValueError as exc:  # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise CandidateValueError(f"{what} holds a value that cannot be decoded: {exc}") from exc


def _decode(node: Any, depth: int) -> Any:
    """Validate a parsed value and turn its tags into values, in place: no second copy of the tree."""
    if depth > MAX_DEPTH:
        raise CandidateValueError(f"returned value is nested more than {MAX_DEPTH} levels deep")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        for i, v in enumerate(node):
            node[i] = _decode(v, depth + 1)
        return node
    if isinstance(node, dict):
        if set(node) == {"__dict__"} and isinstance(node["__dict__"], dict):
            inner: dict[str, Any] = node["__dict__"]  # JSON object keys are always str
            for k, v in inner.items():
                inner[k] = _decode(v, depth + 1)
            return inner
        if set(node) == {"__ndarray__"} and isinstance(node["__ndarray__"], dict):
            return _decode_array(node["__ndarray__"])
    raise CandidateValueError("returned value has an unexpected structure")


def _decode_array(spec: dict[str, Any]) -> np.ndarray:
    dtype = _DTYPES.get(str(spec.get("dtype"))) if isinstance(spec.get("dtype"), str) else None
    shape = spec.get("shape")
    if dtype is None:
        raise CandidateValueError(f"returned array has unsupported dtype {str(spec.get('dtype'))[:40]!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) or len(shape) > 32:
        raise CandidateValueError("returned array has an invalid shape")
    data_text = spec.get("data", "")
    if not isinstance(data_text, str):
        raise CandidateValueError("returned array data is not a base64 string")
    try:
        data = base64.b64decode(data_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CandidateValueError("returned array data is not valid base64") from exc
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise CandidateValueError(f"returned array holds {len(data)} bytes, expected {count * dtype.itemsize} for shape {shape}")
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    except (ValueError, OverflowError) as exc:  # an empty array with a dimension past what NumPy indexes
        raise CandidateValueError(f"returned array has a shape NumPy cannot hold: {exc}") from exc


def _text(value: Any, limit: int, what: str) -> str:
    if not isinstance(value, str):
        return f"(the candidate's {what} is a {type(value).__name__}, not text)"
    return value[:limit] if what == "error" else value[-limit:]


def decode_result(raw: bytes, *, max_elements: int = DEFAULT_RESULT_ELEMENTS) -> dict[str, Any]:
    """Decode the harness's JSON envelope: ``{"ok": true, "value": ...}`` or an error.

    At most ``max_elements`` JSON elements (``count_elements``) are decoded,
    no container deeper than ``MAX_DEPTH``; see the module docstring for what
    that costs in memory.

    Raises:
        CandidateValueError: for any bytes that are not a well-formed envelope
            within the budgets (never another exception), with a message that
            names what was wrong.
    """
    envelope = loads_within(raw, max_elements=max_elements)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        raise CandidateValueError("the candidate's result envelope is malformed")
    if not envelope["ok"]:
        return {
            "ok": False,
            "error": _text(envelope.get("error", "unknown error"), _MAX_ERROR_CHARS, "error"),
            "traceback": _text(envelope.get("traceback", ""), _MAX_TRACEBACK_CHARS, "traceback"),
        }
    try:
        return {"ok": True, "value": _decode(envelope.get("value"), 0)}
    except RecursionError as exc:  # only with a recursion limit set below MAX_DEPTH plus the caller's frames
        raise CandidateValueError("returned value is nested too deeply") from exc
    except MemoryError as exc:
        raise CandidateValueError("decoding the candidate's result exceeded the evaluator's memory bound: return less data") from exc
