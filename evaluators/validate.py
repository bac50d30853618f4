"""Turn the evaluator process's answer into an ``EvalResult``, trusting nothing.

This runs in the controller. Even though the evaluator is trusted code, its
answer crossed a process boundary and may carry values the candidate chose
(NaN, inf, huge strings), so every field is checked here: a missing objective,
a NaN, an inf or a non-numeric metric makes the result INVALID, never a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from evolve.evaluators.protocol import StageOutcome
from evolve.evaluators.thresholds import threshold_failure
from evolve.problem import BUILTIN_FEATURES, ProblemConfig, Stage
from evolve.values import EvalResult, EvalStatus

__all__ = ["EVALUATOR_ONLY_KEYS", "PROGRAM_KEYS", "artifact_source", "builtin_features", "result_from_answer"]

MAX_ARTIFACT_CHARS = 2000
MAX_ARTIFACTS = 12
#: Artifacts that hold what the candidate program itself printed or raised: shown to
#: a model only as the program's own output, never as the evaluator's words.
PROGRAM_KEYS = frozenset({"program_output", "program_traceback"})
#: Artifacts for the problem's author only (the trusted side's own tracebacks and
#: output): kept in the store, never put into a prompt.
EVALUATOR_ONLY_KEYS = frozenset({"evaluator_traceback", "evaluator_stderr"})
_OUTCOME_STATUS = {
    StageOutcome.INVALID: EvalStatus.INVALID,
    StageOutcome.CANDIDATE_TIMEOUT: EvalStatus.TIMEOUT,
    StageOutcome.CANDIDATE_ERROR: EvalStatus.ERROR,
    StageOutcome.EVALUATOR_ERROR: EvalStatus.ERROR,
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


def artifact_source(key: str) -> str:
    """Who wrote an artifact: "program" (the candidate's own output), "author" (never prompted) or "evaluator".

    Keys of a cascade carry their stage's name first (``small.program_output``).
    """
    base = key.rsplit(".", 1)[-1]
    if base in PROGRAM_KEYS or base == "stderr":  # "stderr": the candidate's output, as stored before provenance
        return "program"
    # "traceback", as stored before provenance, may be the evaluator's own: never prompted
    return "author" if base in EVALUATOR_ONLY_KEYS or base == "traceback" else "evaluator"


def _artifacts(answer: dict[str, Any], value: dict[str, Any] | None) -> dict[str, str]:
    """The evaluator's own artifacts and message, and the candidate's output under keys that say it is the program's."""
    arts: dict[str, str] = {}
    raw = value.get("artifacts") if value else None
    if isinstance(raw, dict):
        for key, text in list(raw.items())[:MAX_ARTIFACTS]:
            name = str(key)[:64]
            if name.rsplit(".", 1)[-1] not in PROGRAM_KEYS:  # only the harness's capture speaks as the program
                arts[name] = clip(str(text))
    traceback_key = "evaluator_traceback" if answer.get("outcome") == StageOutcome.EVALUATOR_ERROR else "program_traceback"
    for key, name in (("message", "error"), ("stderr", "program_output"), ("traceback", traceback_key)):
        text = answer.get(key)
        if isinstance(text, str) and text.strip():
            arts[name] = clip(text)
    return arts


@dataclass
class _Merged:
    """What the stages so far produced; later stages' values win."""

    prefixed: bool  # several stages: artifact keys and errors carry the stage name
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    def add_artifacts(self, arts: dict[str, str], stage: str) -> None:
        for key, text in arts.items():
            if key != "error":
                self.artifacts[f"{stage}.{key}" if self.prefixed else key] = text

    def result(self, status: EvalStatus, stage: str | None, duration: float, error: str | None = None) -> EvalResult:
        arts = dict(self.artifacts)
        if error is not None:
            arts["error"] = clip(f"stage {stage}: {error}" if stage and error and self.prefixed else error)
        return EvalResult(status=status, metrics=dict(self.metrics), features=dict(self.features),
                          artifacts=arts, duration_s=duration, stage=stage)


def result_from_answer(answer: Any, config: ProblemConfig, code: str, duration: float, *, stages: list[Stage]) -> EvalResult:
    """Validate an evaluator answer (one entry per stage run) against the cascade, the objective and the feature axes."""
    merged = _Merged(prefixed=len(stages) > 1)
    runs = answer.get("stages") if isinstance(answer, dict) else None
    if not isinstance(runs, list) or not runs or len(runs) > len(stages) or not all(isinstance(r, dict) for r in runs):
        return merged.result(EvalStatus.ERROR, None, duration, "the evaluator process returned a malformed answer")
    for stage, run in zip(stages, runs, strict=False):
        failed = _stage(stage, run, merged, duration)
        if failed is not None:
            return failed
    last = stages[len(runs) - 1]
    if len(runs) < len(stages):
        return merged.result(EvalStatus.ERROR, last.name, duration, "the evaluator process stopped the cascade early")
    return _final(config, code, merged, last.name, duration)


def _stage(stage: Stage, run: dict[str, Any], merged: _Merged, duration: float) -> EvalResult | None:
    """Fold one stage's answer into ``merged``; a result when the cascade stops here."""
    outcome = run.get("outcome")
    if outcome in _OUTCOME_STATUS:
        arts = _artifacts(run, None)
        merged.add_artifacts(arts, stage.name)
        error = arts.get("error", "failed")
        if outcome == StageOutcome.EVALUATOR_ERROR:
            error = "evaluator: " + error
        return merged.result(_OUTCOME_STATUS[StageOutcome(outcome)], stage.name, duration, error)
    value = run.get("value")
    if outcome != StageOutcome.RETURNED or not isinstance(value, dict):
        return merged.result(EvalStatus.ERROR, stage.name, duration,
                             f"{stage.function}() must return a dict with 'metrics' (and optional 'features', 'artifacts')")
    arts = _artifacts(run, value)
    merged.add_artifacts(arts, stage.name)
    unknown = sorted(set(value) - {"metrics", "features", "artifacts"})
    if unknown:
        return merged.result(EvalStatus.ERROR, stage.name, duration,
                             f"{stage.function}() returned unknown key(s) {unknown}; allowed: metrics, features, artifacts")
    metrics, problem = _numbers(value.get("metrics"), "metrics")
    features: dict[str, float] = {}
    if problem is None:
        features, problem = _numbers(value.get("features"), "features")
    if problem is not None:
        return merged.result(EvalStatus.INVALID, stage.name, duration, problem)
    merged.metrics.update(metrics)
    merged.features.update(features)
    below = threshold_failure(stage.threshold.as_dict() if stage.threshold else None, metrics)
    if below is not None:
        return merged.result(EvalStatus.BELOW_THRESHOLD, stage.name, duration, below)
    return None


def _final(config: ProblemConfig, code: str, merged: _Merged, stage: str, duration: float) -> EvalResult:
    builtins = builtin_features(code)
    objective = config.objective
    if objective.weights is not None:
        if objective.metric in merged.metrics:
            return merged.result(EvalStatus.ERROR, stage, duration,
                                 f"the evaluator returned '{objective.metric}', which the problem forms as a weighted sum")
        missing = [k for k in objective.weights if k not in merged.metrics and k not in builtins]
        if missing:
            return merged.result(EvalStatus.INVALID, stage, duration, f"the weighted objective needs metric(s) {missing}")
        total = sum(w * merged.metrics.get(k, builtins.get(k, 0.0)) for k, w in objective.weights.items())
        if not math.isfinite(total):
            return merged.result(EvalStatus.INVALID, stage, duration, f"the weighted objective '{objective.metric}' is {total}")
        merged.metrics[objective.metric] = total
    for o in config.pareto_objectives():  # objectives may name program-text features (e.g. code_length)
        if o.metric not in merged.metrics and o.metric in builtins:
            merged.metrics[o.metric] = builtins[o.metric]
    if objective.metric not in merged.metrics:
        return merged.result(EvalStatus.INVALID, stage, duration,
                             f"the objective metric '{objective.metric}' is missing from the evaluator's metrics")
    missing_objectives = [o.metric for o in config.objectives if o.metric not in merged.metrics]
    if missing_objectives:
        return merged.result(EvalStatus.INVALID, stage, duration, f"objective metric(s) {missing_objectives} are missing")
    for axis in config.features:
        source = builtins if axis.name in builtins else merged.features if axis.name in merged.features else merged.metrics
        if axis.name not in source:
            return merged.result(EvalStatus.INVALID, stage, duration,
                                 f"feature '{axis.name}' is missing: return it in 'features' or 'metrics'")
        merged.features[axis.name] = source[axis.name]
    return merged.result(EvalStatus.OK, stage, duration)
