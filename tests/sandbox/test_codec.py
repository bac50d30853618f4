from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.sandbox import CandidateValueError, decode_result


def test_object_arrays_and_unknown_tags_are_rejected() -> None:
    bad = {"ok": True, "value": {"__ndarray__": {"dtype": "|O", "shape": [1], "data": ""}}}
    with pytest.raises(CandidateValueError, match="dtype"):
        decode_result(json.dumps(bad).encode())
    with pytest.raises(CandidateValueError):
        decode_result(json.dumps({"ok": True, "value": {"__pickle__": "x"}}).encode())


def test_array_size_must_match_its_shape() -> None:
    data = base64.b64encode(b"\0" * 8).decode()
    bad = {"ok": True, "value": {"__ndarray__": {"dtype": "<f8", "shape": [2], "data": data}}}
    with pytest.raises(CandidateValueError, match="expected 16"):
        decode_result(json.dumps(bad).encode())


def test_nan_passes_the_codec_for_the_evaluator_to_reject() -> None:
    value = decode_result(b'{"ok": true, "value": [NaN, Infinity]}')["value"]
    assert value[0] != value[0] and value[1] == float("inf")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(CandidateValueError):
        decode_result(raw)
