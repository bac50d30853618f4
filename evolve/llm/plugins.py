"""Model plug-ins: a user's own model client, installed as a package, selectable by name like the built-ins.

A package declares its model in the ``evolve.models`` entry-point group::

    [project.entry-points."evolve.models"]
    mymodel = "my_package:MyModel"

and ``--model mymodel`` (or ``mymodel/anything``: the plug-in sees the whole
name in ``spec.name``) selects it. The entry point names a ``ModelPlugin``
subclass, or any callable that takes the ``ModelSpec`` and returns a
transport: an object with a ``name`` and ``async call(messages, *,
temperature, seed, max_tokens, timeout_s) -> RawAnswer``. It is wrapped like
every built-in model (``evolve.llm.make_model``): the same timeout,
retries of the failures it reports as ``ProviderError`` with a retryable
``CallOutcome``, in-flight bound, per-attempt accounting in the store, and
the cost and token budgets, priced from the ``RawAnswer`` it returns (or the
spec's per-million-token prices).

Plug-ins run in the controller's process (the candidate never sees them),
with the trust of any installed package.
"""

from __future__ import annotations

import abc
import functools
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from evolve.errors import ConfigError
from evolve.llm.base import Message, RawAnswer, Transport

if TYPE_CHECKING:
    from evolve.config import ModelSpec

__all__ = ["GROUP", "ModelPlugin", "is_plugin", "plugin_for", "plugin_names"]

GROUP = "evolve.models"
_log = logging.getLogger("evolve.llm.plugins")


class ModelPlugin(abc.ABC):
    """Base class of a plug-in model: one request to the model per ``call``, no retries (evolve adds them)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec  # the ModelSpec that selected it: name, api_base, api_key_env, timeouts, prices...
        self.name: str = spec.name

    @abc.abstractmethod
    async def call(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int,
                   timeout_s: float) -> RawAnswer:
        """One completion for ``messages``.

        Raises:
            ProviderError: with the ``CallOutcome`` the failure was (rate limits and server errors are retried).
        """


#: names a plug-in may not take: the built-in models, and the providers whose model strings name them (openai/...)
RESERVED = frozenset({"mutator", "openai", "hosted_vllm", "anthropic", "gemini", "vertex_ai", "azure", "bedrock", "ollama",
                      "mistral", "groq", "deepseek", "openrouter", "together_ai", "huggingface", "cohere", "gguf"})


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    from evolve.catalog import CATALOG

    found = {}
    for ep in entry_points(group=GROUP):
        if ep.name in RESERVED or ep.name in CATALOG or "/" in ep.name or ":" in ep.name:
            _log.warning("ignoring the model plug-in '%s' (%s): that name belongs to a built-in model or a provider; "
                         "its package must register another name", ep.name, ep.value)
            continue
        found[ep.name] = ep
    return found


def plugin_names() -> list[str]:
    """The model names installed plug-ins provide."""
    return sorted(_entry_points())


def _entry_for(name: str) -> EntryPoint | None:
    found = _entry_points()
    return found.get(name) or found.get(name.split("/", 1)[0])


def is_plugin(name: str) -> bool:
    return _entry_for(name) is not None


def plugin_for(spec: ModelSpec) -> Transport | None:
    """The transport of the plug-in that provides ``spec.name``, or None when no plug-in does.

    Raises:
        ConfigError: when the plug-in cannot be loaded or made, naming its package's entry point.
    """
    entry = _entry_for(spec.name)
    if entry is None:
        return None
    try:
        factory = entry.load()
        transport = factory(spec)
    except Exception as exc:
        raise ConfigError(f"the model plug-in '{entry.name}' ({entry.value}) could not be loaded: {type(exc).__name__}: "
                          f"{exc}; fix or reinstall the package that provides it") from exc
    if not isinstance(transport, Transport):
        raise ConfigError(f"the model plug-in '{entry.name}' ({entry.value}) made a {type(transport).__name__}, which has "
                          "no name and async call(messages, *, temperature, seed, max_tokens, timeout_s): subclass "
                          "evolve.ModelPlugin")
    return transport
