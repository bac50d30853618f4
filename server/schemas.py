"""Request and response bodies of the REST API: the contract the OpenAPI schema publishes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from evolve.config import CampaignConfig
from evolve.store.access import TOKEN_NAME
from evolve.values import CampaignStatus, EvalStatus, Origin

__all__ = [
    "COMMON_ERRORS",
    "SERVER_CHOSEN",
    "ArchiveOut",
    "AuditOut",
    "BestOut",
    "CampaignCreate",
    "CampaignOut",
    "CampaignOverview",
    "CampaignResume",
    "ChildrenOut",
    "ErrorOut",
    "HighlightedProgram",
    "ProblemCreate",
    "ProblemOut",
    "ProgramDetail",
    "ProgramPage",
    "ProgramSummary",
    "TokenCreate",
    "TokenCreated",
    "TokenOut",
    "WhoAmI",
    "errors",
]

MAX_CODE_CHARS = 256 * 1024
MAX_CONFIG_CHARS = 64 * 1024


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error answer: what went wrong and what to do; ``field`` names the input at fault when there is one."""

    detail: str
    field: str | None = None


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers with these status codes."""
    return {code: {"model": ErrorOut} for code in codes}


#: what any endpoint may answer: a body that does not parse, no or wrong token, a cross-site write, a body too large,
#: invalid input, an internal error, the store or the sandbox down
COMMON_ERRORS = errors(400, 401, 403, 413, 422, 500, 503)


# ------------------------------------------------------------------ problems
class ProblemCreate(_In):
    """A problem as JSON: the content of problem.yaml as an object, and the two Python files."""

    config: dict[str, Any] = Field(description="problem.yaml as an object: name, description, objective, features, limits, ...")
    initial_program: str = Field(min_length=1, max_length=MAX_CODE_CHARS, description="a working program with EVOLVE-BLOCK markers")
    evaluator: str = Field(min_length=1, max_length=MAX_CODE_CHARS, description="trusted evaluator.py defining evaluate(candidate)")


class ProblemOut(BaseModel):
    id: str = Field(description="the built-in name, or the content fingerprint of a submitted problem")
    name: str
    builtin: bool
    description: str
    objective: dict[str, Any]
    features: list[dict[str, Any]]
    known_best: dict[str, Any] | None = None
    stages: list[str]
    held_out: bool
    created_at: float | None = None


class ProblemDetail(ProblemOut):
    config: dict[str, Any]
    initial_program: str
    evaluator: str


# ----------------------------------------------------------------- campaigns
#: campaign settings the server's operator decides, never a client: where candidates and evaluators run, which Ray cluster
SERVER_CHOSEN = frozenset({"sandbox", "ray_address", "evaluator_sandbox"})


def _campaign_create() -> type[_In]:
    """The request body of ``POST /campaigns``: the problem, and every ``CampaignConfig`` field a client may set, as
    ``CampaignConfig`` declares it (types, bounds, defaults, descriptions): derived here, never re-declared, so the two
    cannot drift (tests/server/test_schemas.py holds them together)."""
    fields: dict[str, Any] = {name: (info.annotation, info) for name, info in CampaignConfig.model_fields.items()
                              if name not in SERVER_CHOSEN}
    fields["problem"] = (str, Field(min_length=1, max_length=100, description="a built-in name or a submitted problem's id"))
    model = create_model("CampaignCreate", __base__=_In, __doc__="A campaign on a problem (a built-in name or a submitted "
                         "problem's id). The server chooses the sandbox and the Ray cluster.", **fields)
    return model


if TYPE_CHECKING:  # to the type checker, a request body: read it with model_dump
    CampaignCreate = _In
else:
    CampaignCreate = _campaign_create()


class CampaignResume(_In):
    """Optional new totals: the iteration target and budgets (null removes a budget); what was spent counts."""

    iterations: int | None = Field(default=None, ge=1, le=10_000_000)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)


class CampaignOut(BaseModel):
    id: str
    problem_id: str
    problem: str
    status: CampaignStatus
    running_here: bool = Field(description="driven by this server right now")
    owner: str | None = Field(default=None, description="host:pid:token of the controller that claimed it last")
    created_by: str | None = Field(default=None, description="the API token (by name) that started it; null: the command line")
    lease_expires: float | None = Field(
        default=None, description="while running: the owner holds it until then (epoch seconds) unless it renews; "
                                  "after that any host may resume it")
    iterations_done: int
    iterations_target: int
    valid_done: int
    valid_rate: float | None
    best_score: float | None
    best_program_id: str | None
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost_usd: float
    error: str | None
    created_at: float
    updated_at: float
    config: dict[str, Any]
    status_counts: dict[str, int] | None = None
    stage_counts: dict[str, int] | None = None
    grid_warnings: list[str] | None = Field(default=None, description="axes of the MAP-Elites grid its programs barely spread over")


# ------------------------------------------------------------------ programs
class ProgramSummary(BaseModel):
    id: str
    parent_id: str | None
    island: int
    generation: int
    iteration: int
    origin: Origin
    status: EvalStatus
    score: float | None
    stage: str | None
    cell: str | None
    model: str | None
    created_at: float


class ProgramPage(BaseModel):
    items: list[ProgramSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class ProgramDetail(ProgramSummary):
    campaign_id: str
    code: str
    diff: str | None = Field(description="unified diff against the parent's code (null for the initial program)")
    model_edit: str | None = Field(description="the edit as the model wrote it (SEARCH/REPLACE blocks or a rewrite)")
    metrics: dict[str, float]
    features: dict[str, float]
    artifacts: dict[str, str]
    template: str | None
    eval_seconds: float
    llm_seconds: float
    node: str | None = Field(default=None, description="the Ray node that evaluated it (null: the controller's host)")
    children: list[str]


class BestOut(BaseModel):
    program: ProgramDetail
    held_out: dict[str, Any] | None = Field(description="the held-out instances' score, once computed (?held_out=true)")


class LineageOut(BaseModel):
    items: list[ProgramSummary] = Field(description="from the initial program down to the program asked for")


class ChildrenOut(BaseModel):
    items: list[ProgramSummary] = Field(description="the first children, in iteration order")
    total: int = Field(description="how many children the program has")


class ArchiveCellOut(BaseModel):
    cell: str = Field(description="bin indices along the feature axes, comma-separated")
    coordinates: list[int]
    elite_id: str
    score: float | None


class IslandOut(BaseModel):
    island: int
    cells: list[ArchiveCellOut]


class ArchiveOut(BaseModel):
    axes: list[dict[str, Any]]
    islands: list[IslandOut]


class ParetoOut(BaseModel):
    objectives: list[dict[str, Any]]
    items: list[ProgramDetail]


# ----------------------------------------------------------------- dashboard
class SeriesBucketOut(BaseModel):
    first: int = Field(description="first iteration of the bucket")
    last: int = Field(description="last iteration of the bucket (the same as first when the campaign is small)")
    programs: int
    valid: int
    low: float | None = Field(description="lowest score among the bucket's valid programs")
    high: float | None = Field(description="highest score among the bucket's valid programs")
    best_id: str | None = Field(description="the bucket's best valid program (the objective's direction applied)")
    best_score: float | None


class BestStepOut(BaseModel):
    iteration: int
    program_id: str
    score: float | None


class IslandSummaryOut(BaseModel):
    island: int
    programs: int
    valid: int
    cells: int = Field(description="filled MAP-Elites cells")
    best_id: str | None
    best_score: float | None


class ModelStatsOut(BaseModel):
    model: str
    template: str | None
    proposals: int
    valid: int
    valid_rate: float
    improved: int = Field(description="valid proposals that beat their parent")
    mean_improvement: float | None
    best_fitness: float | None
    requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    mean_latency_s: float | None
    share: float = Field(description="of the campaign's proposals")
    bandit_estimate: float | None = Field(description="under selection: bandit, its estimate of the share that beat their parent")
    applied: dict[str, int] = Field(default_factory=dict, description="how its answers became programs (exact, reindented, "
                                    "block, rewrite, body, cut) or did not (unchanged, diff_failed)")


class MetaNoteOut(BaseModel):
    island: int
    iteration: int = Field(description="the proposal after which it was written")
    model: str
    text: str = Field(description="the model's own summary; later prompts of the island read it")
    ts: float


class CampaignOverview(BaseModel):
    campaign: CampaignOut
    objective: dict[str, Any]
    known_best: float | None
    series: list[SeriesBucketOut] = Field(description="every program, in at most ?points buckets of consecutive iterations")
    best_steps: list[BestStepOut] = Field(description="the iterations where the best score improved")
    islands: list[IslandSummaryOut]
    models: list[ModelStatsOut]
    notes: list[MetaNoteOut] = Field(description="each island's newest meta-summary (search.meta_every)")
    last_event_id: int = Field(description="follow /events?after= this id for live updates")


class HighlightedProgram(BaseModel):
    code: str = Field(description="the code as HTML (Pygments, classes under .hl; /highlight.css styles them)")
    diff: str | None
    model_edit: str | None


# -------------------------------------------------------------------- access
class TokenCreate(_In):
    """A new token: its name, role and optional limits (null: none)."""

    name: str = Field(pattern=TOKEN_NAME, description="letters, digits and _ . @ -, up to 64; names of revoked tokens stay taken")
    role: Literal["read", "run", "admin"] = Field(description="read: GET endpoints; run: also submit problems and "
                                                              "start/stop/resume its own campaigns; admin: everything")
    max_campaigns: int | None = Field(default=None, ge=1, le=10_000, description="its campaigns running at once")
    max_evaluations: int | None = Field(default=None, ge=1, le=100_000,
                                        description="evaluations in flight at once, over its running campaigns")
    max_cost_usd: float | None = Field(default=None, gt=0, le=1e9, description="model spend over all its campaigns")


class TokenOut(BaseModel):
    name: str
    role: str
    created_at: float
    revoked_at: float | None
    active: bool
    max_campaigns: int | None
    max_evaluations: int | None
    max_cost_usd: float | None


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored only as a digest")


class AuditOut(BaseModel):
    id: int
    ts: float
    actor: str = Field(description="the token's name (EVOLVE_API_TOKEN, loopback, anonymous, unknown token, cli)")
    action: str
    target: str | None
    outcome: str = Field(description="ok, refused or failed")
    detail: str | None


class WhoAmI(BaseModel):
    """The caller as the server sees it, and what it may do (the dashboard hides the rest)."""

    name: str
    role: str
    may_run: bool
    may_admin: bool
    max_campaigns: int | None = None
    max_evaluations: int | None = None
    max_cost_usd: float | None = None
