"""The redactor: planted credentials never survive, whatever text surrounds them."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.secrets import REDACTED, install_log_redaction, redact, secret_values

PLANTED = "zq-planted-credential-8d1f0a"
_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=60)


@pytest.fixture(autouse=True)
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLVE_TEST_API_KEY", PLANTED)
    monkeypatch.setenv("EVOLVE_TEST_HARMLESS", PLANTED + "-not-a-secret-name")


@given(before=_text, after=_text, times=st.integers(1, 3))
def test_a_planted_value_never_survives_redaction(before: str, after: str, times: int) -> None:
    text = before + (PLANTED + after) * times
    assert PLANTED not in redact(text) and REDACTED in redact(text)


@pytest.mark.parametrize(
    "shape",
    ["sk-proj-AbCdEf0123456789", "sk-ant-api03-xyzXYZ012345", "AIzaSyA1234567890abcdefghijklmnop", "hf_abcdefghijklmnopqrstuvwx",
     "ghp_abcdefghijklmnopqrstuvwxyz0123"],
)
def test_common_key_shapes_are_redacted_even_when_not_in_the_environment(shape: str) -> None:
    assert shape not in redact(f"error: invalid key {shape}, check it")


def test_headers_and_query_strings_keep_their_names() -> None:
    assert redact("Authorization: Bearer abc.def.ghi-123") == f"Authorization: Bearer {REDACTED}"
    assert redact("GET /v1?api_key=s3cr3tvalue&x=1") == f"GET /v1?api_key={REDACTED}&x=1"


def test_only_credential_like_names_count_and_ordinary_text_is_untouched() -> None:
    assert PLANTED in secret_values() and all("not-a-secret-name" not in v for v in secret_values())
    assert redact("sum_radii = 2.635 after 200 iterations") == "sum_radii = 2.635 after 200 iterations"


def test_log_records_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("evolve.test.secrets")
    logger.addHandler(handler)
    try:
        install_log_redaction("evolve.test.secrets")
        logger.error("provider said: bad key %s", PLANTED)
    finally:
        logger.removeHandler(handler)
    assert PLANTED not in stream.getvalue() and REDACTED in stream.getvalue()
