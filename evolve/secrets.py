"""Keep credentials out of everything evolve writes.

API keys reach evolve only through the environment. Any text that crosses a
boundary where a provider may have echoed a key back (an error message, a
model's answer, a log record) goes through ``redact`` before it is printed or
stored. Two nets: the exact values of environment variables whose names look
like credentials, and the shapes of common key formats, for keys that arrive
some other way (a key pasted into a URL, a proxy's error page).
"""

from __future__ import annotations

import logging
import os
import re

__all__ = ["REDACTED", "install_log_redaction", "redact", "secret_values"]

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
# group 1 is a prefix to keep, group 2 the secret
_SECRET_SHAPES = re.compile(
    r"()((?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}"  # OpenAI, Anthropic (sk-ant-...), many proxies
    r"|AIza[0-9A-Za-z_\-]{20,}"  # Google
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|evolve_[A-Za-z0-9_\-]{40,})"  # evolve's own API tokens (evolve token create)
    r"|(Bearer\s+|[?&](?:key|api_key|api-key|token)=)([^\s&\"',;]{6,})",  # Authorization headers, query strings
    re.IGNORECASE,
)
_MIN_SECRET_LEN = 8


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials, longest first."""
    found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every credential-like value replaced by ``[redacted]``."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return _SECRET_SHAPES.sub(lambda m: (m.group(1) or m.group(3) or "") + REDACTED, text)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter()


def install_log_redaction(*logger_names: str) -> None:
    """Redact every record of the named loggers (and the root logger's handlers)."""
    for name in ("", *logger_names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
