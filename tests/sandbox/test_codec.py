from __future__ import annotations

import base64
import contextlib
import json
import tracemalloc
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evolve.sandbox import CandidateValueError, decode_result
from evolve.sandbox.codec import DEFAULT_RESULT_ELEMENTS, count_elements
from evolve.sandbox.harness import _encode


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


# ---------------------------------------------------------------- budgets (issue 16)

def _envelope(value_json: bytes) -> bytes:
    return b'{"ok": true, "value": ' + value_json + b"}"


def test_tiny_nested_lists_past_the_element_budget_are_refused_before_they_allocate() -> None:
    count = (63 << 20) // 3  # the 66 MB payload that once decoded into 3.1 GB
    raw = _envelope(b"[" + b"[]," * count + b"[]]")
    tracemalloc.start()
    try:
        with pytest.raises(CandidateValueError, match=f"over the budget of {DEFAULT_RESULT_ELEMENTS}"):
            decode_result(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"refusing it allocated {peak} bytes"


def test_the_element_budget_is_the_callers_to_set() -> None:
    raw = _envelope(b"[1, 2, 3, 4]")  # the envelope's brace and comma, the list's bracket and three commas
    assert count_elements(raw) == 6 and decode_result(raw, max_elements=6)["value"] == [1, 2, 3, 4]
    with pytest.raises(CandidateValueError, match="about 6 JSON elements, over the budget of 5"):
        decode_result(raw, max_elements=5)


@pytest.mark.parametrize(("raw", "fragment"), [
    (_envelope(b"[" * 200_000 + b"]" * 200_000), "nested too deeply"),  # past the parser's recursion limit
    (_envelope(b"[" * 60 + b"]" * 60), "more than 40 levels"),
    (_envelope(b"1" * 5000), "cannot be decoded"),  # past int's max string digits: a ValueError, not a JSONDecodeError
    (b"\xff\xfe", "not UTF-8"),
    (b'{"ok": true, "value": [1, 2', "not valid JSON"),
    (b"[]", "envelope is malformed"),
    (_envelope(b'{"__ndarray__": {"dtype": "<f8", "shape": [0, 100000000000000000000], "data": ""}}'), "shape"),
    (_envelope(b'{"__ndarray__": {"dtype": ["<f8"], "shape": [1], "data": ""}}'), "dtype"),
    (_envelope(b'{"__ndarray__": {"dtype": "<f8", "shape": [1], "data": [1]}}'), "base64"),
])
def test_malformed_results_are_the_candidates_error_with_a_message(raw: bytes, fragment: str) -> None:
    with pytest.raises(CandidateValueError, match=fragment):
        decode_result(raw)


def test_an_error_envelope_whose_message_is_not_text_says_so() -> None:
    envelope = decode_result(b'{"ok": false, "error": [[1, [2]]], "traceback": {"a": 1}}')
    assert envelope == {"ok": False, "error": "(the candidate's error is a list, not text)",
                        "traceback": "(the candidate's traceback is a dict, not text)"}


def _keys(n: int, value: bytes) -> bytes:
    return b'{"__dict__": {' + b",".join(b'"%d":%s' % (i, value) for i in range(n)) + b"}}"


# The dearest payloads per element and per byte. Each costs about linearly in its size, so a quarter of the
# default budget (and of the byte cap) shows the multiples at a quarter of the time.
_ELEMENTS = DEFAULT_RESULT_ELEMENTS // 4 - 10
_DEAREST = {
    "empty lists": lambda: b"[" + b",".join([b"[]"] * (_ELEMENTS // 2)) + b"]",
    "keys to empty lists": lambda: _keys(_ELEMENTS // 2, b"[]"),
    "keys to empty dicts": lambda: _keys(_ELEMENTS // 2, b"{}"),  # refused, but only once parsed
    "lists of one float": lambda: b"[" + b",".join(b"[%d.5]" % i for i in range(_ELEMENTS // 2)) + b"]",
    "distinct strings": lambda: b"[" + b",".join(b'"s%d"' % i for i in range(_ELEMENTS)) + b"]",
    "one long string": lambda: b'"' + "é".encode() * (8 << 20) + b'"',
    "one array": lambda: json.dumps(_encode(np.zeros((12 << 20) // 8))).encode(),
}


@pytest.mark.parametrize("name", list(_DEAREST))
def test_decoding_costs_at_most_three_times_the_bytes_plus_100_bytes_an_element(name: str) -> None:
    raw = _envelope(_DEAREST[name]())
    tracemalloc.start()
    try:
        with contextlib.suppress(CandidateValueError):
            decode_result(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 3 * len(raw) + 100 * count_elements(raw)
    print(f"{name}: {len(raw) / 2**20:.1f} MiB, {count_elements(raw)} elements -> peak {peak / 2**20:.1f} MiB "
          f"({peak / len(raw):.1f}x the bytes, {peak / bound:.0%} of the bound)")
    assert peak <= bound, f"{name}: {peak / 2**20:.1f} MiB for {len(raw) / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"


# ------------------------------------------------------- mutated real envelopes

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=12))
_arrays = st.sampled_from(["bool", "int8", "uint16", "int64", "float32", "float64"]).flatmap(
    lambda dtype: st.lists(st.integers(0, 3), max_size=3).map(lambda shape: np.ones(shape, dtype=dtype)))
_values = st.recursive(
    st.one_of(_leaf, _arrays),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def _real_envelope(value: Any, ok: bool) -> bytes:
    """The bytes the sandbox harness writes for a returned value (or a failure), through its own encoder."""
    if not ok:
        return json.dumps({"ok": False, "error": f"ValueError: {value!r}"[:2000], "traceback": "Traceback ..."}).encode()
    return json.dumps({"ok": True, "value": _encode(value)}, allow_nan=True).encode("utf-8")


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(_real_envelope(draw(_values), draw(st.booleans())))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "nest", "splice", "truncate"]))
        if kind == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            raw[at:at] = draw(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"\\ud800", b"\x00", b"NaN", b"1e999",
                                                b'{"__ndarray__":', b'{"__dict__":', b"9" * 5000, b"\xc3", b"\xed\xa0\x80"]))
        elif kind == "nest":
            depth = draw(st.sampled_from([30, 41, 999, 5000]))
            opener = draw(st.sampled_from([b"[", b'{"__dict__": {"a": ', b'{"x": ']))
            raw[at:at] = opener * depth
        elif kind == "splice":
            other = _real_envelope(draw(_values), True)
            start = draw(st.integers(0, len(other)))
            raw[at:at] = other[start : start + draw(st.integers(0, 64))]
        else:
            del raw[at:]
    return bytes(raw)


def test_any_mutation_of_a_real_envelope_decodes_or_is_the_candidates_error_within_the_memory_bound() -> None:
    seen: Counter[str] = Counter()

    @given(_mutated())
    @settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def check(raw: bytes) -> None:
        seen["drawn"] += 1
        tracemalloc.start()
        try:
            try:
                decode_result(raw)
                outcome = "decoded"
            except CandidateValueError as exc:
                assert str(exc), "the error must say what was wrong"
                outcome = "refused"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        event(outcome)
        assert peak <= 3 * len(raw) + 100 * count_elements(raw) + (64 << 10)
        seen[outcome] += 1

    check()
    reached = seen["decoded"] + seen["refused"]
    print(f"{seen['drawn']} envelopes: {seen['decoded']} decoded, {seen['refused']} refused, {reached / seen['drawn']:.0%} reached the checks")
    assert reached == seen["drawn"] and seen["drawn"] >= 1500, seen
    assert seen["decoded"] >= 0.1 * reached and seen["refused"] >= 0.1 * reached, seen  # both ways are exercised
