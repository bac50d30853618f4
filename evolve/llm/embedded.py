"""The embedded models: GGUF files run in-process by llama.cpp on the CPU.

The packaged models (``evolve.catalog``: Qwen2.5-Coder-1.5B by default, 0.5B,
SmolLM2-135M) ship inside registry packages and are verified against a pinned
SHA-256 before they are loaded, so a fresh machine with no key and no network
still runs the whole model path. ``gguf:/path/to/model.gguf`` runs any other
GGUF file the same way (unverified: the user's own file). The model is loaded
once per process and serves one request at a time from a worker thread, so the
event loop never blocks. A request stops at its deadline, or as soon as its
caller gives up, by forcing end-of-sequence on the next token; and, since a
small model rarely stops by itself, once the answer's code is complete: the
first closed fenced block of an answer with no SEARCH marker, and with
``one_edit`` the first ``>>>>>>> REPLACE`` line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evolve.catalog import CATALOG, model_file
from evolve.errors import ConfigError
from evolve.llm.base import CallOutcome, Message, ProviderError, RawAnswer
from evolve.llm.grammar import asks_for_edit, edit_grammar, focus_from_prompt, program_from_prompt

__all__ = ["EMBEDDED_CONTEXT", "EmbeddedTransport", "Speed", "describe_embedded", "embedded_model_path", "grammar_accepted",
           "is_embedded", "prepare_embedded"]

EMBEDDED_CONTEXT = 8192  # a GGUF file of the user's own: the context it is loaded with
_GGUF_PREFIX = "gguf:"
_INSTALL_HINT = "install it with: pip install 'llama-cpp-python>=0.3.7' (scripts/install.sh does)"


def is_embedded(name: str) -> bool:
    """Whether a model name means a GGUF file run in-process."""
    return name in CATALOG or name.startswith(_GGUF_PREFIX)


def describe_embedded(name: str) -> str:
    """What an in-process model name refers to, for the notice ``evolve run`` prints."""
    if name.startswith(_GGUF_PREFIX):
        return f"the GGUF file {name[len(_GGUF_PREFIX):]} (your own, not verified), run in-process on the CPU"
    m = CATALOG[name]
    return f"the embedded {m.title}, {m.license}, run in-process on the CPU"


def embedded_model_path(name: str, *, show_progress: bool = False) -> Path:
    """The GGUF file a model name refers to (a packaged model's verified, assembled once into the cache).

    Raises:
        ConfigError: when the file or a package shipping it is missing, or a packaged file is not its pinned SHA-256.
    """
    if name.startswith(_GGUF_PREFIX):
        path = Path(name[len(_GGUF_PREFIX):]).expanduser()
        if not path.is_file():
            raise ConfigError(f"model {name}: no GGUF file at {path}")
        return path
    if name not in CATALOG:
        raise ConfigError(f"unknown embedded model {name}: use one of {', '.join(CATALOG)} or gguf:/path/model.gguf")
    return model_file(CATALOG[name], show_progress=show_progress)


def prepare_embedded(names: list[str], *, show_progress: bool = False) -> None:
    """Verify (and assemble, the first time) the files of these in-process models, so a missing or tampered one is
    refused before anything is created for them.

    Raises:
        ConfigError: as ``embedded_model_path``.
    """
    for name in dict.fromkeys(names):
        embedded_model_path(name, show_progress=show_progress)


@dataclass
class Speed:
    """How fast a model ran here: reading prompts and writing answers, separately (the first dominates on a CPU)."""

    answers: int = 0
    prompt_tokens: int = 0
    prompt_s: float = 0.0
    completion_tokens: int = 0
    generation_s: float = 0.0

    def add(self, prompt_tokens: int, prompt_s: float, completion_tokens: int, generation_s: float) -> None:
        self.answers += 1
        self.prompt_tokens += prompt_tokens
        self.prompt_s += prompt_s
        self.completion_tokens += completion_tokens
        self.generation_s += generation_s

    def summary(self) -> str:
        if not self.answers:
            return "no answers yet"
        per = (self.prompt_s + self.generation_s) / self.answers
        read = self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0
        write = self.completion_tokens / self.generation_s if self.generation_s > 0 else 0.0
        return (f"{per:.1f} s per answer over {self.answers} (reading prompts {read:.0f} tokens/s, "
                f"writing {write:.1f} tokens/s)")


def grammar_accepted(llm: Any, text: str) -> bool:
    """Whether llama.cpp parses a GBNF grammar for this model's vocabulary. ``LlamaGrammar`` only stores the text; a
    grammar llama.cpp rejects would become a NULL sampler that crashes the process at the first token."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, text.encode("utf-8"), b"root")
    if not sampler:
        _log.warning("llama.cpp rejected the one-edit grammar; this answer is unconstrained")
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


_log = logging.getLogger("evolve.llm.embedded")
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
            context = next((m.context for m in CATALOG.values() if m.file == path.name), EMBEDDED_CONTEXT)
            # writing uses every thread asked for; reading a prompt (compute-bound) was no faster with two threads
            # than with one on 2 cores (27 against 32 tokens/s for the 1.5B model), writing was (9 against 6)
            llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads, n_threads_batch=max(1, threads // 2),
                        n_batch=512, verbose=False)
            _loaded[(path, threads)] = (llm, threading.Lock())
        return _loaded[(path, threads)]


_CLOSED_FENCE = re.compile(rb"```[^\n]*\n.*?\n```[ \t]*\n", re.DOTALL)
_SEARCH_MARK = re.compile(rb"^<{5,9} ?SEARCH", re.MULTILINE)
_REPLACE_MARK = re.compile(rb"^>{5,9} ?REPLACE[ \t]*$", re.MULTILINE)


class _Stopper:
    """A logits processor that forces end-of-sequence at the deadline, when the caller gives up, or once the answer's
    code is complete (a small model rarely stops by itself): with ``stop_after_code``, the first closed fenced block of
    an answer that has no SEARCH marker; with ``one_edit``, the first REPLACE marker line. It also notes when the
    prompt has been read (its first call), which splits a request's time into reading and writing."""

    def __init__(self, deadline: float, *, stop_after_code: bool, one_edit: bool = False) -> None:
        self.eos = 0
        self.constrained = False  # a grammar samples after this processor: forcing end-of-sequence could leave it no token
        self.deadline = deadline
        self.stop_after_code = stop_after_code
        self.one_edit = one_edit
        self.detokenize: Any = None
        self.cancelled = threading.Event()
        self.fired = False
        self.first_call: float | None = None
        self._prompt_len: int | None = None
        self._text = b""

    def _force_eos(self, scores: np.ndarray) -> np.ndarray:
        scores = np.full_like(scores, -np.inf)
        scores[self.eos] = 0.0
        return scores

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.first_call is None:
            self.first_call = time.monotonic()
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            self.fired = True
            if self.constrained:  # llama.cpp aborts the process when the grammar rejects every token left open:
                return scores  # the streaming reader stops at the next token instead (an exception here is swallowed)
            return self._force_eos(scores)
        if self.constrained or not (self.stop_after_code or self.one_edit):
            return scores  # under a grammar, the grammar itself ends the answer after its REPLACE marker
        if self._prompt_len is None:
            self._prompt_len = len(input_ids)
        elif len(input_ids) > self._prompt_len:
            self._text += self.detokenize([int(input_ids[-1])])
            if self._complete():
                return self._force_eos(scores)
        return scores

    def _complete(self) -> bool:
        text = self._text
        if self.one_edit and b"REPLACE" in text and _REPLACE_MARK.search(text):
            return True
        return (self.stop_after_code and b"```" in text and _CLOSED_FENCE.search(text) is not None
                and _SEARCH_MARK.search(text) is None)


class EmbeddedTransport:
    """One chat completion from an in-process llama.cpp model."""

    def __init__(self, name: str, *, threads: int | None = None, stop_after_code: bool = False, one_edit: bool = False,
                 sampling: dict[str, float | None] | None = None, show_progress: bool = False,
                 constrain: bool = True) -> None:
        self.name = name
        self.stop_after_code = stop_after_code
        self.one_edit = one_edit
        self.constrain = constrain
        self.sampling = {k: v for k, v in (sampling or {}).items() if v is not None}
        self.path = embedded_model_path(name, show_progress=show_progress)
        self.speed = Speed()
        # Every core for writing (the 1.5B model writes 9 tokens/s on 2 cores against 6 on one; that is what a
        # proposal's time is mostly spent on); llama.cpp's threads spin-wait on each other, so an evaluation running
        # beside it slows writing while it runs (SmolLM2: 145 tok/s to 44 on 2 cores), which ModelSpec.threads avoids.
        self.threads = threads or max(1, os.cpu_count() or 1)

    def _grammar(self, llm: Any, messages: list[Message]) -> Any:
        """With ``one_edit``, for a prompt asking for SEARCH/REPLACE blocks: the grammar of one edit of its program
        that applies (``evolve.llm.grammar``), once llama.cpp has accepted it; else None (the answer is free)."""
        if not (self.one_edit and self.constrain and asks_for_edit(messages)):
            return None
        program = program_from_prompt(messages)
        text = edit_grammar(program, focus_from_prompt(messages)) if program is not None else None
        if text is None or not grammar_accepted(llm, text):
            return None
        from llama_cpp.llama_grammar import LlamaGrammar

        return LlamaGrammar.from_string(text, verbose=False)

    def warm(self) -> None:
        """Load the model now (about a second) rather than on the first proposal."""
        _load(self.path, self.threads)

    def _generate(self, messages: list[Message], temperature: float, seed: int, max_tokens: int, stopper: _Stopper) -> RawAnswer:
        llm, lock = _load(self.path, self.threads)
        with lock:
            stopper.eos, stopper.detokenize = int(llm.token_eos()), llm.detokenize
            grammar = self._grammar(llm, messages)
            stopper.constrained = grammar is not None
            started = time.monotonic()
            try:
                if grammar is None:
                    out = llm.create_chat_completion(
                        messages=messages, temperature=temperature, seed=seed % 2**31, max_tokens=max_tokens,
                        logits_processor=[stopper], **self.sampling,
                    )
                    choice = out["choices"][0]
                    usage = out.get("usage") or {}
                    text, finish = choice["message"].get("content") or "", choice.get("finish_reason")
                    prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
                else:
                    text, finish, prompt_tokens, completion_tokens = self._constrained(
                        llm, messages, temperature, seed, max_tokens, stopper, grammar)
            except ValueError as exc:  # the prompt does not fit the context
                raise ProviderError(CallOutcome.REJECTED, str(exc)[:300]) from None
            ended = time.monotonic()
        if stopper.fired:
            raise ProviderError(CallOutcome.TIMEOUT, "generation passed its deadline")
        read = (stopper.first_call or ended) - started
        self.speed.add(prompt_tokens, read, completion_tokens, ended - started - read)
        return RawAnswer(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=0.0,
                         finish_reason=finish)

    def _constrained(self, llm: Any, messages: list[Message], temperature: float, seed: int, max_tokens: int,
                     stopper: _Stopper, grammar: Any) -> tuple[str, str | None, int, int]:
        """A grammar-constrained answer, streamed so it can stop at any token: forcing end-of-sequence where the
        grammar forbids it aborts llama.cpp, and an exception raised in its sampler callback is swallowed.
        Returns the text, the finish reason, and the prompt and completion tokens."""
        parts: list[str] = []
        finish: str | None = None
        written = 0
        stream = llm.create_chat_completion(
            messages=messages, temperature=temperature, seed=seed % 2**31, max_tokens=max_tokens,
            logits_processor=[stopper], grammar=grammar, stream=True, **self.sampling,
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content")
                if piece:
                    parts.append(piece)
                    written += 1
                finish = choice.get("finish_reason") or finish
                if stopper.fired:
                    break
        finally:
            stream.close()
        # the stream reports no usage: what the context holds now is the prompt and the tokens written
        return "".join(parts), finish, max(0, llm.n_tokens - written), written

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        stopper = _Stopper(time.monotonic() + timeout_s, stop_after_code=self.stop_after_code, one_edit=self.one_edit)
        try:
            return await asyncio.to_thread(self._generate, messages, temperature, seed, max_tokens, stopper)
        except asyncio.CancelledError:
            stopper.cancelled.set()  # the thread stops at its next token instead of running to max_tokens
            raise
