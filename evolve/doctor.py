"""``evolve doctor``: what works on this machine, and what to do about what does not.

Three questions, each answered by trying it rather than by guessing:
which sandbox backends can run a candidate here (bwrap by a real run, docker
by asking the engine), which models answer (a packaged model by the state of
its verified file; a hosted one or an endpoint by a one-token call, made only
where a key or an endpoint is configured, so no call goes out unasked), and
whether the store opens and is at the latest schema (read without migrating).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from evolve.catalog import CATALOG, model_state
from evolve.config import ModelSpec
from evolve.errors import EvolveError
from evolve.llm import make_model
from evolve.sandbox import BACKENDS, DESCRIPTIONS, backend_problem
from evolve.secrets import redact
from evolve.store.store import schema_state, shown_spec

__all__ = ["Check", "check_models", "check_sandboxes", "check_store"]

#: the variables litellm reads a provider's key from, by the model string's prefix
_PROVIDER_KEYS = {"openai/": "OPENAI_API_KEY", "anthropic/": "ANTHROPIC_API_KEY", "gemini/": "GEMINI_API_KEY",
                  "mistral/": "MISTRAL_API_KEY", "groq/": "GROQ_API_KEY", "deepseek/": "DEEPSEEK_API_KEY",
                  "openrouter/": "OPENROUTER_API_KEY", "together_ai/": "TOGETHERAI_API_KEY"}
_PING_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Check:
    """One answer: what was checked, whether it works, and the detail (why not, and what to do)."""

    what: str
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def check_sandboxes() -> list[Check]:
    """Every concrete backend: whether it can run a candidate here and what protects it, or why not."""
    checks = []
    for name in BACKENDS:
        if name == "auto":
            continue
        why = backend_problem(name)
        checks.append(Check("sandbox", name, why is None, DESCRIPTIONS[name] if why is None else why))
    return checks


def _key_variable(spec: ModelSpec) -> str | None:
    if spec.api_key_env:
        return spec.api_key_env
    return next((var for prefix, var in _PROVIDER_KEYS.items() if spec.name.startswith(prefix)), None)


async def _ping(spec: ModelSpec) -> Check:
    try:
        model = make_model(spec.model_copy(update={"max_retries": 0, "timeout_s": _PING_TIMEOUT_S}))
        completion = await model.complete([{"role": "user", "content": "Say OK."}], temperature=0.0, seed=0, max_tokens=1)
    except EvolveError as exc:
        return Check("model", spec.name, False, f"a one-token call failed: {redact(str(exc))}")
    where = f" at {spec.api_base}" if spec.api_base else ""
    return Check("model", spec.name, True, f"answered a one-token call{where} in {completion.latency_s:.2f} s")


def check_models(specs: list[ModelSpec]) -> list[Check]:
    """The packaged models' state, and for each of ``specs`` that is called over the network, a one-token call."""
    checks = []
    for m in CATALOG.values():
        state = model_state(m)
        checks.append(Check("model", m.name, not state.startswith("not installed"), state))
    for spec in specs:
        if spec.in_process or spec.name == "mutator":
            continue
        key = _key_variable(spec)
        if spec.api_base is None and key is not None and not os.environ.get(key):  # a provider that needs a key
            checks.append(Check("model", spec.name, False, f"not called: no key or endpoint configured (set {key})"))
            continue
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            checks.append(Check("model", spec.name, False, f"not called: {spec.api_key_env} is not set"))
            continue
        checks.append(asyncio.run(_ping(spec)))
    return checks


def check_store(db: str) -> Check:
    """Whether the store at ``db`` opens, and whether its schema is this evolve's latest (nothing is migrated here)."""
    name = shown_spec(db)  # a URL's password never printed
    if "://" not in db and not Path(db).expanduser().exists():
        return Check("store", name, True, "no database yet: 'evolve run' creates it at the latest schema")
    try:
        current, head = schema_state(db)
    except EvolveError as exc:
        return Check("store", name, False, str(exc))
    if current == head:
        return Check("store", name, True, f"opens; schema {head}, the latest")
    return Check("store", name, True, f"opens; schema {current or 'none'}, behind the latest {head}: "
                                    "the next evolve command that opens it migrates it (back it up first)")
