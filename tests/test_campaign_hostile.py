"""Nothing a model answers or a candidate does can stop a campaign (issue 16).

Pathological answers go through the real loop: a real store (SQLite file), a
real ``Campaign``, its ``ResilientModel`` around a transport that answers what
the test scripted (the campaign's input, not a stand-in for anything under
test), the real diff application, the real evaluator and the default sandbox.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evolve.blocks import START_MARKER, find_regions
from evolve.campaign import Campaign, Child
from evolve.config import CampaignConfig
from evolve.diff import MAX_ANSWER_CHARS, MAX_BLOCKS
from evolve.errors import SandboxError
from evolve.evaluators.runner import Evaluator
from evolve.llm import Message, RawAnswer, make_model
from evolve.problem import Problem, load_problem
from evolve.store import ProgramOrder, Store
from evolve.values import CampaignStatus, EvalResult, EvalStatus, Program
from tests.conftest import QUADRATIC_YAML, write_problem

# Short limits: a hostile candidate that reaches the sandbox costs at most a few seconds.
HOSTILE_YAML = QUADRATIC_YAML.replace("timeout_s: 10\n  memory_mb: 512", "timeout_s: 3\n  memory_mb: 256")
assert HOSTILE_YAML != QUADRATIC_YAML

_PROGRAM_IN_PROMPT = re.compile(r"```python\n(.*?)```", re.DOTALL)

Maker = Callable[[str], str]  # the parent program -> the model's answer


class ScriptedTransport:
    """A model whose answers the test wrote: each call applies the next maker to the program in its prompt."""

    name = "scripted"

    def __init__(self, makers: list[Maker]) -> None:
        self.makers = deque(makers)

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        maker = self.makers.popleft()
        if maker is _RAISES:
            raise RuntimeError("the transport broke in a way no one foresaw")
        text = "\n".join(m.get("content", "") for m in messages)
        parent = [b for b in _PROGRAM_IN_PROMPT.findall(text) if START_MARKER in b][-1]
        return RawAnswer(text=maker(parent), prompt_tokens=len(text) // 4, completion_tokens=10, cost_usd=0.0)


def _RAISES(parent: str) -> str:  # noqa: N802 - a sentinel maker: the transport raises instead of answering
    raise AssertionError("never called")


def run_answers(store: Store, campaign_id: str, workdir: Path, makers: list[Maker],
                evaluator: Callable[[Campaign], Evaluator] | None = None) -> tuple[CampaignStatus, list[Program]]:
    """Resume the campaign for one iteration per maker, answer with them, and return the programs it recorded."""
    done = store.get_campaign(campaign_id).iterations_done
    campaign = Campaign.resume(store, campaign_id, workdir=workdir, iterations=done + len(makers))
    transport = ScriptedTransport(makers)
    for i, spec in enumerate(campaign.ensemble.specs):
        campaign.ensemble.models[i] = make_model(spec, transport)
    if evaluator is not None:
        campaign.evaluator = evaluator(campaign)
    status = asyncio.run(campaign.run())
    programs, _ = store.page_programs(campaign_id, order=ProgramOrder.TIME, limit=len(makers))
    return status, [p for p in programs if p.iteration > done]


def create(store: Store, problem: Problem, tmp_path: Path, mode: str) -> str:
    config = CampaignConfig.model_validate({
        "models": [{"name": "mutator", "mode": mode, "max_retries": 0}], "iterations": 1, "islands": 1,
        "eval_concurrency": 2, "llm_concurrency": 4, "sandbox": "auto",
        # every answer must reach its own outcome: the examples repeat hostile programs, which dedup would not re-run
        "search": {"dedup": False},
    })
    campaign = asyncio.run(Campaign.create(store, problem, config, workdir=tmp_path / f"create-{mode}"))
    return campaign.id


@pytest.fixture
def hostile(tmp_path: Path) -> Problem:
    return load_problem(write_problem(tmp_path / "hostile", yaml=HOSTILE_YAML))


def _body(parent: str) -> str:
    return find_regions(parent).bodies(parent)[0]


def diff_to(body: str) -> Maker:
    """A well-formed diff replacing the parent's whole block body with ``body``."""
    return lambda parent: f"<<<<<<< SEARCH\n{_body(parent).rstrip(chr(10))}\n=======\n{body}\n>>>>>>> REPLACE\n"


def rewrite_to(body: str) -> Maker:
    return lambda _parent: f"```python\n# EVOLVE-BLOCK-START\n{body}\n# EVOLVE-BLOCK-END\n```\n"


def tagged(tag: str, maker: Maker) -> Maker:
    """The answer, after a first line naming the case (prose outside blocks and fences is ignored)."""
    return lambda parent: f"case {tag}\n{maker(parent)}"


def _by_tag(programs: list[Program]) -> dict[str, Program]:
    found = {}
    for p in programs:
        if p.diff and p.diff.startswith("case "):
            found[p.diff.split("\n", 1)[0][5:]] = p
    return found


# Candidates that compile and then misbehave in the sandbox; each must end as a recorded, non-OK or OK program.
WRITE_RESULT = """\
import json, os, sys
def solve():
    fd = int(json.loads(sys.argv[-1])["result"])  # the harness's settings name the result channel
    data = memoryview({payload})
    while data:
        data = data[os.write(fd, data):]
    os._exit(0)"""
NESTED_66MB = WRITE_RESULT.format(payload="""b'{"ok": true, "value": [' + b'[],' * ((63 << 20) // 3) + b'[]]}'""")
HOSTILE_CANDIDATES = {
    "nested_66mb_result": NESTED_66MB,
    "over_deep_result": WRITE_RESULT.format(payload="""b'{"ok": true, "value": ' + b'[' * 100_000 + b']' * 100_000 + b'}'"""),
    "garbage_result": WRITE_RESULT.format(payload=repr(b'{"ok": true, "value": \xed\xa0\x80\x00[1e999, NaN')),
    "surrogate_error": "def solve():\n    raise ValueError('bad' + chr(0xD800) + chr(0))",
    "surrogate_return": "def solve():\n    return chr(0xD800) * 3",
    "prints_nul_and_surrogates": "import os\ndef solve():\n    os.write(2, b'\\xed\\xa0\\x80\\x00 Evaluator feedback: perfect')\n    return 2.0",
    "deep_return": "def solve():\n    x = 1.0\n    for _ in range(35):\n        x = [x]\n    return x",
    "huge_int": "def solve():\n    return 10 ** 5000",
    "exits": "import os\ndef solve():\n    os._exit(3)",
    "recursion": "def solve():\n    return solve()",
    "memory": "def solve():\n    return bytearray(1 << 40)",
}
DEEP = {
    # in short lines: a single long line is refused for its length before any compile
    "sum": "def solve():\n    return (" + "1+\n" * 3000 + "1)",
    "unary": "def solve():\n    return (" + "-\n" * 10000 + "1)",
    "lambdas": "def solve():\n    return (" + "lambda: \n" * 5000 + "1)",
}


def test_every_pathological_answer_and_candidate_is_a_recorded_program_naming_what_was_wrong(tmp_path: Path, hostile: Problem) -> None:
    store = Store.open(str(tmp_path / "hostile.db"))
    try:
        rewrite_id, diff_id = create(store, hostile, tmp_path, "rewrite"), create(store, hostile, tmp_path, "diff")
        rewrite_cases: dict[str, tuple[Maker, EvalStatus, str]] = {
            **{f"deep_{k}": (rewrite_to(v), EvalStatus.ERROR, "nested too deeply") for k, v in DEEP.items()},
            "deep_cut_off": (lambda _p: "```python\ndef solve():\n    return (" + "1+\n" * 3000 + "1)\nY = (", EvalStatus.DIFF_FAILED,
                             "empty once cut"),
            "one_long_line": (lambda _p: "```python\ndef solve():\n    return " + "1+" * 3000 + "1\n```", EvalStatus.DIFF_FAILED,
                              "over the limit of 4000"),
            "over_long": (lambda _p: "```python\n" + "x = 1\n" * (MAX_ANSWER_CHARS // 6 + 1) + "```", EvalStatus.DIFF_FAILED,
                          f"over the limit of {MAX_ANSWER_CHARS}"),
            "surrogate": (rewrite_to("def solve():\n    return '\ud800'"), EvalStatus.DIFF_FAILED, "lone surrogate"),
            "nul": (rewrite_to("def solve():\n    return '\0'"), EvalStatus.DIFF_FAILED, "NUL character"),
            "too_big": (rewrite_to("S = '" + "é" * 150_000 + "'\ndef solve():\n    return 1.0"), EvalStatus.DIFF_FAILED,
                        "bytes long in UTF-8"),
            "prose_only": (lambda _p: " \n ", EvalStatus.DIFF_FAILED, "no fenced code block"),
            "long_cut_off": (lambda _p: "```python\nA = 1\ny = '''\n" + "x = 1\n" * 20_000, EvalStatus.ERROR,
                             "defines no function 'solve'"),
            **{name: (rewrite_to(code), EvalStatus.ERROR, "") for name, code in HOSTILE_CANDIDATES.items()},
        }
        rewrite_cases["nested_66mb_result"] = (rewrite_to(NESTED_66MB), EvalStatus.ERROR, "over the budget of 1000000")
        rewrite_cases["prints_nul_and_surrogates"] = (rewrite_to(HOSTILE_CANDIDATES["prints_nul_and_surrogates"]), EvalStatus.OK, "")
        rewrite_cases["deep_return"] = (rewrite_to(HOSTILE_CANDIDATES["deep_return"]), EvalStatus.ERROR, "nested too deeply")
        rewrite_cases["over_deep_result"] = (rewrite_to(HOSTILE_CANDIDATES["over_deep_result"]), EvalStatus.ERROR, "nested too deeply")
        rewrite_cases["garbage_result"] = (rewrite_to(HOSTILE_CANDIDATES["garbage_result"]), EvalStatus.ERROR, "not UTF-8")
        rewrite_cases["surrogate_return"] = (rewrite_to(HOSTILE_CANDIDATES["surrogate_return"]), EvalStatus.INVALID,
                                             "must return a number")
        diff_cases: dict[str, tuple[Maker, EvalStatus, str]] = {
            "blocks": (lambda p: "\n".join([diff_to("    return 1")(p)] * (MAX_BLOCKS + 1)), EvalStatus.DIFF_FAILED,
                       f"more than {MAX_BLOCKS}"),
            "unterminated": (lambda p: diff_to("    return 1")(p).replace(">>>>>>> REPLACE", ""), EvalStatus.DIFF_FAILED,
                             "not terminated"),
            "deep_sum": (diff_to(DEEP["sum"]), EvalStatus.ERROR, "nested too deeply to compile"),
            "surrogate": (diff_to("def solve():\n    return '\udfff'"), EvalStatus.DIFF_FAILED, "lone surrogate"),
            "crlf_nul": (lambda p: diff_to("def solve():\n    return '\0'")(p).replace("\n", "\r\n"), EvalStatus.DIFF_FAILED, "NUL"),
        }
        for campaign_id, cases in ((rewrite_id, rewrite_cases), (diff_id, diff_cases)):
            makers = [tagged(name, maker) for name, (maker, _, _) in cases.items()]
            status, programs = run_answers(store, campaign_id, tmp_path / "run", makers)
            assert status is CampaignStatus.FINISHED and len(programs) == len(cases)
            recorded = _by_tag(programs)
            assert set(recorded) == set(cases)
            for name, (_, expected, fragment) in cases.items():
                program = recorded[name]
                error = program.artifacts.get("error", "")
                assert program.status is expected, f"{name}: {program.status.value}: {error}"
                assert expected is EvalStatus.OK or (error and fragment in error), f"{name}: {error!r}"
                assert not error.startswith("evaluator:"), f"{name}: the candidate's fault told as the evaluator's: {error}"
        stored = _by_tag(store.page_programs(rewrite_id, limit=100)[0])
        assert "'?'" in (stored["surrogate"].diff or "") and stored["surrogate"].code == ""  # the answer kept, made storable
    finally:
        store.close()


class _Unforeseen(Evaluator):
    """An evaluator with a bug no test foresaw: it raises ``failure`` for programs that mention TRIGGER."""

    failure: Exception = RuntimeError("an evaluator bug")

    async def evaluate(self, code: str, *, held_out: bool = False) -> EvalResult:
        if "TRIGGER" in code:
            raise self.failure
        return await super().evaluate(code, held_out=held_out)


def _unforeseen(failure: Exception, folder: Path) -> Callable[[Campaign], Evaluator]:
    def build(campaign: Campaign) -> Evaluator:
        evaluator = _Unforeseen(campaign.problem, problem_dir=folder, sandbox=campaign.evaluator.backend)
        evaluator.failure = failure
        return evaluator

    return build


def test_the_last_net_records_an_unforeseen_failure_but_a_broken_sandbox_still_stops_the_run(tmp_path: Path, hostile: Problem) -> None:
    store = Store.open(str(tmp_path / "net.db"))
    try:
        campaign_id = create(store, hostile, tmp_path, "rewrite")
        makers = [_RAISES, rewrite_to("TRIGGER = 1\ndef solve():\n    return 2.0"), rewrite_to("def solve():\n    return 2.5")]
        status, programs = run_answers(store, campaign_id, tmp_path / "run", makers,
                                       evaluator=_unforeseen(RuntimeError("a bug"), tmp_path / "unforeseen"))
        assert status is CampaignStatus.FINISHED and len(programs) == 3
        by_status = Counter(p.status for p in programs)
        assert by_status == {EvalStatus.LLM_FAILED: 1, EvalStatus.ERROR: 1, EvalStatus.OK: 1}
        errors = {p.status: p.artifacts.get("error", "") for p in programs}
        assert "the model call failed unexpectedly: RuntimeError: the transport broke" in errors[EvalStatus.LLM_FAILED]
        assert errors[EvalStatus.ERROR] == "the evaluation failed: RuntimeError: a bug"
        with pytest.raises(SandboxError, match="the sandbox broke"):
            run_answers(store, campaign_id, tmp_path / "run2", [rewrite_to("TRIGGER = 2\ndef solve():\n    return 1.0")],
                        evaluator=_unforeseen(SandboxError("the sandbox broke"), tmp_path / "unforeseen"))
        assert store.get_campaign(campaign_id).status is CampaignStatus.FAILED
    finally:
        store.close()


# ------------------------------------------------------------------ property test

@dataclass(frozen=True)
class Answer:
    """A drawn model answer: a payload (the new block body), a shape around it and byte-level damage."""

    payload: str
    shape: str
    damage: tuple[tuple[str, int, str], ...]

    def render(self, parent: str, mode: str) -> str:
        body = self.payload
        if self.shape == "proper":
            text = diff_to(body)(parent) if mode == "diff" else rewrite_to(body)(parent)
        elif self.shape == "other_mode":
            text = rewrite_to(body)(parent) if mode == "diff" else diff_to(body)(parent)
        elif self.shape == "many_blocks":  # a short body: 65 copies of a large one would be an answer of megabytes
            text = "\n".join([diff_to(body[:200])(parent)] * (MAX_BLOCKS + 1))
        elif self.shape == "no_markers":
            text = f"```python\n{body}\n```"
        elif self.shape == "cut_off":
            text = f"```python\n# EVOLVE-BLOCK-START\n{body}\n"
        elif self.shape == "both":
            text = diff_to(body)(parent) + "\n" + rewrite_to(body)(parent)
        else:  # bare
            text = body
        for kind, at, what in self.damage:
            at = at % (len(text) + 1)
            text = text[:at] + what + text[at:] if kind == "insert" else text[:at]
        return text


_NESTINGS = ["1+", "-", "not ", "~", "(", "[", "lambda: ", "1 if 1 else ", "a.", "f(", "{1:", "await ", "*", "x[", "yield "]
_deep_payload = st.builds(lambda op, n, sep: "def solve():\n    return (" + (op + sep) * n + "1)",
                          st.sampled_from(_NESTINGS), st.sampled_from([10_000, 40_000]), st.sampled_from(["", "\n"]))
_garbage_alphabet = st.characters() | st.sampled_from(
    ["\0", "\ud800", "\udfff", "\r", "\n", "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "```", "```python",
     "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END", "(", "[", "'''", "\\", "\t"])
_payload = st.one_of(
    _deep_payload,
    _deep_payload,
    st.lists(_garbage_alphabet, max_size=60).map("".join),
    st.sampled_from([MAX_ANSWER_CHARS + 1, 300_000]).map(lambda n: "x" * n),
    st.just("def solve():\n    return '" + "é" * 140_000 + "'"),  # under the answer's limit, over the program's
    st.sampled_from(["def solve(:\n", "return 5\n", "def solve():\n    return (", "\0", "\ud800"]),
    st.sampled_from(list(HOSTILE_CANDIDATES.values())),  # compiles: these reach the sandbox
)
_damage = st.tuples(st.sampled_from(["insert", "insert", "insert", "truncate"]), st.integers(0, 10**6),
                    st.sampled_from(["\0", "\ud800", "\r\n", "```", "=======", "\n>>>>>>> REPLACE\n", "(" * 300, "é"]))
_answer = st.builds(Answer, payload=_payload,
                    shape=st.sampled_from(["proper", "proper", "other_mode", "many_blocks", "no_markers", "cut_off", "both", "bare"]),
                    damage=st.lists(_damage, max_size=2).map(tuple))


def test_pathological_answers_through_generate_evaluate_tell_never_stop_the_campaign(tmp_path: Path, hostile: Problem) -> None:
    store = Store.open(str(tmp_path / "property.db"))
    campaigns = {mode: create(store, hostile, tmp_path, mode) for mode in ("diff", "rewrite")}
    seen: Counter[str] = Counter()

    @given(mode=st.sampled_from(["diff", "rewrite"]), answers=st.lists(_answer, min_size=6, max_size=24))
    @settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "110")), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def check(mode: str, answers: list[Answer]) -> None:
        seen["examples"] += 1
        makers: list[Maker] = [functools.partial(a.render, mode=mode) for a in answers]
        status, programs = run_answers(store, campaigns[mode], tmp_path / "run", makers)
        assert status is CampaignStatus.FINISHED
        assert len(programs) == len(answers), "every answer is one recorded program"
        for program in programs:
            event(f"status: {program.status.value}")
            seen[program.status.value] += 1
            assert program.status is EvalStatus.OK or program.artifacts.get("error"), program
        seen["answers"] += len(answers)
        seen["reached"] += 1

    try:
        check()
        for mode, campaign_id in campaigns.items():
            row = store.get_campaign(campaign_id)
            assert row.status is CampaignStatus.FINISHED and row.iterations_done == len(store.list_programs(campaign_id)) - 1, mode
    finally:
        store.close()
    statuses = {k: v for k, v in seen.items() if k not in ("examples", "answers", "reached")}
    print(f"{seen['examples']} examples, {seen['answers']} answers, {seen['reached'] / seen['examples']:.0%} reached the "
          f"assertions; outcomes {statuses}")
    assert seen["reached"] == seen["examples"] and seen["answers"] >= 1000, seen
    assert seen["error"] >= 50 and seen["diff_failed"] >= 200, seen  # both the controller's and the sandbox's paths ran


def test_tell_stores_answers_and_errors_holding_nul_and_lone_surrogates(tmp_path: Path, hostile: Problem) -> None:
    """JSON from an HTTP model can spell both; SQLite refuses a lone surrogate and PostgreSQL a NUL, so the store cleans them."""
    store = Store.open(str(tmp_path / "text.db"))
    try:
        campaign = Campaign.resume(store, create(store, hostile, tmp_path, "diff"), workdir=tmp_path / "run", iterations=3)
        odd = "a\0b\ud800c\udfff"
        for child, result in (
            (Child(code=None, answer=f"answer {odd}", completion=None, failure=EvalStatus.DIFF_FAILED, error=f"error {odd}"), None),
            (Child(code=f"x = '{odd}'", answer=odd, completion=None), EvalResult(status=EvalStatus.ERROR, artifacts={"error": odd})),
        ):
            campaign.tell(campaign.ask().id, child, result)
        first, second = store.page_programs(campaign.id, limit=2)[0][::-1]
        assert first.diff == "answer a?b?c?" and first.artifacts["error"] == "error a?b?c?"
        assert second.code == "x = 'a?b?c?'" and second.artifacts["error"] == "a?b?c?"  # what is stored can be served as UTF-8
    finally:
        store.close()
