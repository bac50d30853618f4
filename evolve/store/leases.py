"""Who runs a campaign: the controller's claim, its lease and the fence on every write it makes.

A controller claims a campaign under an owner name (``host:pid:token``, one
token per claim) and holds it until ``lease_expires``, which it pushes forward
while it runs (``renew_lease``, a heartbeat). Another controller, on this host
or any other, may claim the campaign only when it is not running, when its
lease has expired, or when its owner's process is gone from this host. The
claim is one write transaction (``BEGIN IMMEDIATE`` on SQLite, the row locked
``FOR UPDATE`` on PostgreSQL), so two claimers never both win.

Winning is not enough: a controller that was frozen (a suspended VM, a
partitioned host) past its lease may wake up after another took over. So each
of its writes (``record_program``, ``migrate_islands``, ``set_status``) names
its owner and is refused with ``LeaseLostError`` once the campaign belongs to
someone else: its work in flight is dropped, never recorded twice.

Lease times are the database's clock on PostgreSQL (one clock for every host)
and this host's on SQLite (one host).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, text, update

from evolve.config import CampaignConfig, stored_config
from evolve.errors import StoreError
from evolve.store.schema import campaigns, events
from evolve.values import CampaignStatus

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from evolve.store.rows import CampaignRow

__all__ = ["LEASE_S", "LeaseLostError", "Leases", "database_now", "fence", "new_owner", "owner_alive", "write_event"]

#: How long a claim holds without renewal; the running controller renews it every third of that.
LEASE_S = 30.0


class LeaseLostError(StoreError):
    """The campaign now belongs to another controller: this one's lease expired and it was claimed again."""


def _pid_namespace() -> str:
    """This process's pid namespace (containers sharing a hostname each have their own pid 1)."""
    try:
        return str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        return "0"


def new_owner() -> str:
    """A fresh owner name for one claim: ``host:pid:token:pid-namespace``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def _process(owner: str) -> tuple[str, str, str | None]:
    """The process an owner name stands for: host, pid and pid namespace (None in names older stores wrote)."""
    parts = owner.split(":")
    return parts[0], parts[1] if len(parts) > 1 else "", parts[3] if len(parts) > 3 else None


def owner_alive(owner: str) -> bool:
    """Whether the process that claimed a campaign may still run: False only for a pid gone from this host and this
    pid namespace (a sibling container with the same hostname cannot see the owner's pids: only the lease tells)."""
    host, pid, namespace = _process(owner)
    if host != socket.gethostname() or not pid.isdigit() or (namespace is not None and namespace != _pid_namespace()):
        return True  # another host's process: only its lease tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def database_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock (PostgreSQL), or this host's (SQLite: it is on this host)."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
    return time.time()


def _held(status: str, owner: str | None, lease_expires: float | None, now: float,
          alive: Callable[[str], bool]) -> bool:
    """Whether a campaign row is held by its owner right now."""
    if status != CampaignStatus.RUNNING.value or not owner:
        return False
    if lease_expires is not None and lease_expires <= now:
        return False  # its owner stopped renewing
    return alive(owner)  # a lease not yet run out, or an older store's claim: the owner's process tells


def write_event(conn: Connection, campaign_id: str, kind: str, data: dict[str, Any]) -> None:
    """Append one event of a campaign, inside the caller's transaction."""
    conn.execute(events.insert().values(campaign_id=campaign_id, ts=time.time(), kind=kind, data=data))


class Leases:
    """The claim, lease and status writes of the store (mixed into ``Store``)."""

    if TYPE_CHECKING:
        def _writing(self, what: str) -> AbstractContextManager[Connection]: ...
        def _reading(self, what: str) -> AbstractContextManager[Connection]: ...
        def get_campaign(self, campaign_id: str) -> CampaignRow: ...

    def claim_campaign(
        self, campaign_id: str, owner: str, *, owner_alive: Callable[[str], bool] = owner_alive, target: int | None,
        config: CampaignConfig | None = None, lease_s: float = LEASE_S,
    ) -> CampaignRow:
        """Mark a campaign RUNNING under ``owner`` with a lease of ``lease_s``; ``target`` and ``config`` replace the
        stored ones when given.

        Raises:
            StoreError: when another controller holds it (running, its lease not expired, its process not gone).
        """
        with self._writing("claiming the campaign") as conn:
            row = conn.execute(select(campaigns.c.status, campaigns.c.owner, campaigns.c.lease_expires, campaigns.c.iterations_target,
                                      campaigns.c.config)
                               .where(campaigns.c.id == campaign_id).with_for_update()).first()
            if row is None:
                raise StoreError(f"no campaign '{campaign_id}'")
            now = database_now(conn)
            # this very process may claim again what it holds (a campaign object made anew; its old one is fenced out)
            same_process = row.owner is not None and _process(row.owner) == _process(owner) and None not in _process(owner)
            if _held(row.status, row.owner, row.lease_expires, now, owner_alive) and not same_process:
                raise StoreError(f"campaign {campaign_id} is being run by {row.owner}{_lease_note(row.lease_expires, now)}; "
                                 "stop it first, or resume it once that lease has expired")
            values: dict[str, Any] = {"status": CampaignStatus.RUNNING.value, "owner": owner, "error": None,
                                      "lease_expires": now + lease_s, "updated_at": time.time()}
            if target is not None or config is not None:  # the target and the config's iterations stay one value
                goal = target if target is not None else row.iterations_target
                stored = config or stored_config(row.config, campaign=campaign_id)
                values["iterations_target"] = goal
                values["config"] = stored.updated(iterations=goal, source="the iteration target").model_dump(mode="json")
            conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))
            first = row.owner is None and row.status == CampaignStatus.RUNNING.value  # as create_campaign left it
            write_event(conn, campaign_id, "started" if first else "resumed",
                   {"owner": owner, "previous_owner": row.owner, "lease_s": lease_s})
        return self.get_campaign(campaign_id)

    def holder(self, campaign_id: str, owner_alive: Callable[[str], bool] = owner_alive) -> str | None:
        """The owner that holds the campaign right now (running, lease not expired, process not gone), if any.

        Raises:
            StoreError: when there is no such campaign.
        """
        with self._reading("reading the campaign's owner") as conn:
            row = conn.execute(select(campaigns.c.status, campaigns.c.owner, campaigns.c.lease_expires, campaigns.c.iterations_target,
                                      campaigns.c.config)
                               .where(campaigns.c.id == campaign_id)).first()
            if row is None:
                raise StoreError(f"no campaign '{campaign_id}'")
            held = _held(row.status, row.owner, row.lease_expires, database_now(conn), owner_alive)
        return str(row.owner) if held else None

    def renew_lease(self, campaign_id: str, owner: str, lease_s: float = LEASE_S) -> bool:
        """Push ``owner``'s lease to ``lease_s`` from now; False when the campaign is no longer its own."""
        with self._writing("renewing the campaign's lease") as conn:
            now = database_now(conn)
            renewed = conn.execute(update(campaigns).where(
                campaigns.c.id == campaign_id, campaigns.c.owner == owner, campaigns.c.status == CampaignStatus.RUNNING.value,
            ).values(lease_expires=now + lease_s).returning(campaigns.c.id)).first()
        return renewed is not None

    def set_status(self, campaign_id: str, status: CampaignStatus, *, error: str | None = None,
                   owner: str | None = None) -> None:
        """Record a campaign's status (its lease ends unless it is RUNNING).

        Raises:
            LeaseLostError: when ``owner`` is given and the campaign is no longer its own.
        """
        with self._writing("updating the campaign status") as conn:
            where = [campaigns.c.id == campaign_id]
            if owner is not None:  # only while the campaign is still its own (mark_interrupted clears the owner)
                where.append(campaigns.c.owner == owner)
            values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": time.time()}
            if status is not CampaignStatus.RUNNING:
                values["lease_expires"] = None
            if conn.execute(update(campaigns).where(*where).values(**values).returning(campaigns.c.id)).first() is None:
                if owner is not None:
                    raise LeaseLostError(f"campaign {campaign_id} is run by another controller now; this one's "
                                         f"status '{status.value}' was not recorded")
                raise StoreError(f"no campaign '{campaign_id}'")
            write_event(conn, campaign_id, "status", {"status": status.value, "error": error})

    def mark_interrupted(self, owner_alive: Callable[[str], bool] = owner_alive) -> list[str]:
        """Campaigns left RUNNING that nobody holds any more (lease expired, or owner gone from this host) become
        INTERRUPTED; returns their ids."""
        changed = []
        with self._writing("reconciling campaign states") as conn:
            now = database_now(conn)
            rows = conn.execute(select(campaigns.c.id, campaigns.c.status, campaigns.c.owner, campaigns.c.lease_expires)
                                .where(campaigns.c.status == CampaignStatus.RUNNING.value).order_by(campaigns.c.id)
                                .with_for_update()).all()
            for row in rows:
                if not _held(row.status, row.owner, row.lease_expires, now, owner_alive):
                    # no owner any more: a controller that lapsed and wakes up later is fenced out of it
                    conn.execute(update(campaigns).where(campaigns.c.id == row.id)
                                 .values(status=CampaignStatus.INTERRUPTED.value, lease_expires=None, owner=None))
                    write_event(conn, row.id, "status", {"status": CampaignStatus.INTERRUPTED.value,
                                                         "previous_owner": row.owner})
                    changed.append(row.id)
        return changed


def fence(conn: Connection, campaign_id: str, owner: str | None) -> None:
    """Inside a write transaction: lock the campaign's row and check that ``owner`` (when given) still holds it.

    Raises:
        LeaseLostError: when another controller claimed it since.
    """
    query = select(campaigns.c.owner, campaigns.c.status).where(campaigns.c.id == campaign_id).with_for_update()
    current = conn.execute(query).first()
    if owner is None or current is None:
        return
    if current.owner != owner:
        now = f"run by {current.owner}" if current.owner else f"{current.status}, marked so when the lease lapsed"
        raise LeaseLostError(f"campaign {campaign_id} is no longer this controller's ({owner}): its lease expired and "
                             f"the campaign is {now}; this controller stops")


def _lease_note(lease_expires: float | None, now: float) -> str:
    if lease_expires is None:
        return ""
    return f" (its lease runs {lease_expires - now:.0f} s more, renewed while it runs)"
