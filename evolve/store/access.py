"""Who may use a server: API tokens with roles and limits, the audit trail of writes, who created what.

A token is shown once, when it is made, and stored only as its SHA-256
digest: a token is 256 random bits, so a plain digest cannot be reversed and
needs no salt or slow hash; looking one up is an indexed equality on the
digest. A revoked token keeps its row (its name stays taken, so the audit
trail names one token per name) and is refused from the next request on.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from evolve.errors import StoreError
from evolve.store.schema import api_tokens, audit, campaigns

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["ROLES", "TOKEN_NAME", "Access", "AuditEntry", "TokenNameError", "TokenRow", "digest", "new_token"]

#: The roles, weakest first: each may do what the ones before it may.
ROLES = ("read", "run", "admin")
#: A token's name: what the audit trail, campaigns and problems record (never the token's value).
TOKEN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


#: Names the server and the CLI act under themselves: no token may take one (it would own what they made).
RESERVED_NAMES = frozenset({"evolve_api_token", "loopback", "anonymous", "cli", "unknown"})


class TokenNameError(StoreError):
    """The name is taken (names of revoked tokens stay taken), reserved or not a valid name."""
_PREFIX = "evolve_"


def new_token() -> str:
    """A fresh token: ``evolve_`` and 43 URL-safe characters (256 random bits)."""
    return _PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as the store knows it: never its value."""

    name: str
    role: str
    created_at: float
    revoked_at: float | None
    max_campaigns: int | None
    max_evaluations: int | None
    max_cost_usd: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at, "revoked_at": self.revoked_at,
                "active": self.active, "max_campaigns": self.max_campaigns, "max_evaluations": self.max_evaluations,
                "max_cost_usd": self.max_cost_usd}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: float
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "actor": self.actor, "action": self.action, "target": self.target,
                "outcome": self.outcome, "detail": self.detail}


_TOKEN_COLUMNS = (api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at, api_tokens.c.revoked_at,
                  api_tokens.c.max_campaigns, api_tokens.c.max_evaluations, api_tokens.c.max_cost_usd)
_DETAIL_CHARS = 500


class Access:
    """Tokens, the audit trail and creators (mixed into ``Store``)."""

    if TYPE_CHECKING:
        def _writing(self, what: str) -> AbstractContextManager[Connection]: ...
        def _reading(self, what: str) -> AbstractContextManager[Connection]: ...

    # ----------------------------------------------------------------- tokens
    def create_token(self, name: str, role: str, *, max_campaigns: int | None = None, max_evaluations: int | None = None,
                     max_cost_usd: float | None = None) -> tuple[str, TokenRow]:
        """Make a token; returns its value (shown once, stored nowhere) and its row.

        Raises:
            StoreError: when the name is taken (revoked tokens keep theirs) or the role unknown.
        """
        if role not in ROLES:
            raise StoreError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
        if re.fullmatch(TOKEN_NAME, name) is None:
            raise TokenNameError(f"'{name}' is not a token name: 1 to 64 letters, digits and _ . @ -, starting with a "
                                 "letter or digit")
        if name.lower() in RESERVED_NAMES:
            raise TokenNameError(f"'{name}' is a name the server uses itself ({', '.join(sorted(RESERVED_NAMES))}); "
                                 "choose another")
        value = new_token()
        row = TokenRow(name=name, role=role, created_at=time.time(), revoked_at=None, max_campaigns=max_campaigns,
                       max_evaluations=max_evaluations, max_cost_usd=max_cost_usd)
        taken = f"a token named '{name}' exists (or existed: names of revoked tokens stay taken); choose another name"
        try:
            with self._writing("creating the token") as conn:
                if conn.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first() is not None:
                    raise TokenNameError(taken)
                conn.execute(insert(api_tokens).values(
                    digest=digest(value), name=name, role=role, created_at=row.created_at, max_campaigns=max_campaigns,
                    max_evaluations=max_evaluations, max_cost_usd=max_cost_usd))
        except TokenNameError:
            raise
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # another request took the name meanwhile (PostgreSQL)
                raise TokenNameError(taken) from exc
            raise
        return value, row

    def token_for(self, value: str) -> TokenRow | None:
        """The active token whose value this is; None for an unknown or revoked one."""
        with self._reading("checking the token") as conn:
            row = conn.execute(select(*_TOKEN_COLUMNS).where(api_tokens.c.digest == digest(value),
                                                             api_tokens.c.revoked_at.is_(None))).first()
        return None if row is None else TokenRow(**row._mapping)

    def token_named(self, name: str) -> TokenRow | None:
        with self._reading("reading the token") as conn:
            row = conn.execute(select(*_TOKEN_COLUMNS).where(api_tokens.c.name == name)).first()
        return None if row is None else TokenRow(**row._mapping)

    def list_tokens(self) -> list[TokenRow]:
        with self._reading("listing tokens") as conn:
            rows = conn.execute(select(*_TOKEN_COLUMNS).order_by(api_tokens.c.created_at)).all()
        return [TokenRow(**r._mapping) for r in rows]

    def has_tokens(self) -> bool:
        """Whether tokens were ever made here (then a server needs one for writes, even on loopback). Revoked ones
        count: revoking every token closes a server, it never reopens it to every local caller as its admin."""
        with self._reading("listing tokens") as conn:
            return conn.execute(select(api_tokens.c.name).limit(1)).first() is not None

    def revoke_token(self, name: str) -> TokenRow:
        """Revoke a token by name (idempotent); returns its row.

        Raises:
            StoreError: when there is no token of that name.
        """
        with self._writing("revoking the token") as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                         .values(revoked_at=time.time()))
            row = conn.execute(select(*_TOKEN_COLUMNS).where(api_tokens.c.name == name)).first()
        if row is None:
            raise StoreError(f"no token named '{name}' ('evolve token list' shows them)")
        return TokenRow(**row._mapping)

    # ------------------------------------------------------------------ audit
    def add_audit(self, actor: str, action: str, *, target: str | None = None, outcome: str = "ok",
                  detail: str | None = None) -> None:
        with self._writing("recording the audit event") as conn:
            conn.execute(insert(audit).values(ts=time.time(), actor=actor[:64], action=action[:32],
                                              target=None if target is None else target[:100], outcome=outcome[:16],
                                              detail=None if detail is None else detail[:_DETAIL_CHARS]))

    def audit_trail(self, *, after_id: int = 0, limit: int = 200, actor: str | None = None,
                    newest: bool = False) -> list[AuditEntry]:
        """Audit events after ``after_id``, oldest first: the first ``limit`` of them, or with ``newest`` the last."""
        query = select(audit).where(audit.c.id > after_id)
        if actor is not None:
            query = query.where(audit.c.actor == actor)
        with self._reading("reading the audit trail") as conn:
            rows = conn.execute(query.order_by(audit.c.id.desc() if newest else audit.c.id).limit(limit)).all()
        entries = [AuditEntry(**r._mapping) for r in rows]
        return entries[::-1] if newest else entries

    # --------------------------------------------------------------- creators
    def spent_by(self, creator: str) -> float:
        """Model spend over every campaign ``creator`` started, in USD."""
        with self._reading("summing spend") as conn:
            total = conn.execute(select(func.coalesce(func.sum(campaigns.c.cost_usd), 0.0))
                                 .where(campaigns.c.created_by == creator)).scalar_one()
        return float(total)
