"""Turn the evaluator process's answer into an ``EvalResult``, trusting nothing.

This runs in the controller. Even though the evaluator is trusted code, its
answer crossed a process boundary and may carry values the candidate chose
(NaN, inf, huge strings), so every field is checked here: a missing objective,
a NaN, an inf or a non-numeric metric makes the result INVALID, never a score.
"""

from __future__ import annotations

import math
from typing import Any

from evolve.problem import BUILTIN_FEATURES, ProblemConfig
from evolve.values import EvalResult, EvalStatus

__all__ = ["builtin_features", "result_from_answer"]

MAX_ARTIFACT_CHARS = 2000
MAX_ARTIFACTS = 12
_OUTCOME_STATUS = {
    "invalid": EvalStatus.INVALID,
    "candidate_timeout": EvalStatus.TIMEOUT,
    "candidate_error": EvalStatus.ERROR,
    "evaluator_error": EvalStatus.ERROR,
}


def clip(text: str, limit: int = MAX_ARTIFACT_CHARS) -> str:
    """Keep artifacts short: they go into prompts and the store."""
    return text if len(text) <= limit else text[: limit // 2] + "\n…[truncated]…\n" + text[-limit // 2 :]


def builtin_features(code: str) -> dict[str, float]:
    """Features computed from the program text (see ``BUILTIN_FEATURES``)."""
    values = {"code_length": float(len(code)), "line_count": float(code.count("\n") + 1)}
    assert set(values) == BUILTIN_FEATURES
    return values


def _numbers(raw: Any, what: str) -> tuple[dict[str, float], str | None]:
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        return {}, f"evaluate() returned '{what}' as {type(raw).__name__}; it must be a dict of numbers"
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return {}, f"{what[:-1]} '{key}' is not a number ({type(value).__name__})"
        if not math.isfinite(value):
            return {}, f"{what[:-1]} '{key}' is {value} (must be finite)"
        out[str(key)] = float(value)
    return out, None


def _artifacts(answer: dict[str, Any], value: dict[str, Any] | None) -> dict[str, str]:
    arts: dict[str, str] = {}
    raw = value.get("artifacts") if value else None
    if isinstance(raw, dict):
        for key, text in list(raw.items())[:MAX_ARTIFACTS]:
            arts[str(key)[:64]] = clip(str(text))
    for key in ("message", "stderr", "traceback"):
        text = answer.get(key)
        if isinstance(text, str) and text.strip():
            arts[key if key != "message" else "error"] = clip(text)
    return arts


def _fail(status: EvalStatus, message: str, arts: dict[str, str], duration: float) -> EvalResult:
    return EvalResult(status=status, artifacts={**arts, "error": clip(message)}, duration_s=duration)


def result_from_answer(answer: Any, config: ProblemConfig, code: str, duration: float) -> EvalResult:
    """Validate an evaluator answer against the problem's objective and feature axes."""
    if not isinstance(answer, dict) or not isinstance(answer.get("outcome"), str):
        return _fail(EvalStatus.ERROR, "the evaluator process returned a malformed answer", {}, duration)
    outcome = answer["outcome"]
    if outcome in _OUTCOME_STATUS:
        arts = _artifacts(answer, None)
        if outcome == "evaluator_error":
            arts["error"] = clip("evaluator: " + arts.get("error", "failed"))
        return EvalResult(status=_OUTCOME_STATUS[outcome], artifacts=arts, duration_s=duration)
    value = answer.get("value")
    if outcome != "returned" or not isinstance(value, dict):
        return _fail(EvalStatus.ERROR, "evaluate() must return a dict with 'metrics' (and optional 'features', 'artifacts')", {}, duration)
    arts = _artifacts(answer, value)
    unknown = sorted(set(value) - {"metrics", "features", "artifacts"})
    if unknown:
        return _fail(EvalStatus.ERROR, f"evaluate() returned unknown key(s) {unknown}; allowed: metrics, features, artifacts", arts, duration)
    metrics, problem = _numbers(value.get("metrics"), "metrics")
    if problem is None:
        features, problem = _numbers(value.get("features"), "features")
    if problem is not None:
        return _fail(EvalStatus.INVALID, problem, arts, duration)
    objective = config.objective.metric
    if objective not in metrics:
        return _fail(EvalStatus.INVALID, f"the objective metric '{objective}' is missing from the evaluator's metrics", arts, duration)
    builtins = builtin_features(code)
    placed: dict[str, float] = {}
    for axis in config.features:
        source = builtins if axis.name in builtins else features if axis.name in features else metrics
        if axis.name not in source:
            return _fail(EvalStatus.INVALID, f"feature '{axis.name}' is missing: return it in 'features' or 'metrics'", arts, duration)
        placed[axis.name] = source[axis.name]
    return EvalResult(
        status=EvalStatus.OK,
        metrics=metrics,
        features={**features, **placed},
        artifacts=arts,
        duration_s=duration,
    )
