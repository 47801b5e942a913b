"""The admin API: dead letters (list, inspect, replay, discard) and message traces.

Mounted by `main.py` only when ADMIN_TOKEN is set, and left out of the public OpenAPI document.
Every request needs `Authorization: Bearer <ADMIN_TOKEN>`. An operation that changes something
names who does it (`by`), which is recorded with the dead letter.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from . import dlq
from .deps import SessionDep
from .trace import trace

log = structlog.get_logger(__name__)

MAX_PAGE = 500


async def require_token(request: Request) -> None:
    """401 unless the request carries the admin token as a bearer token."""
    expected = request.app.state.admin_token.get_secret_value().encode()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            status_code=401,
            detail="a valid admin token is required: Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_token)])


def _named(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(
            "must name who does this (a user name, a ticket): it is recorded with the dead letter"
        )
    return value


# Who replays or discards: recorded in the dead letter's `replayed_by` / `discarded_by`.
Actor = Annotated[str, Field(max_length=200), AfterValidator(_named)]


class Selection(BaseModel):
    """Pending dead letters to act on: every given field must match (at least one is needed)."""

    consumer: str | None = None
    type: str | None = None
    reason: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    def filter(self) -> dlq.Filter:
        return dlq.Filter(**self.model_dump())


class Act(BaseModel):
    by: Actor


class ActOnMany(BaseModel):
    by: Actor
    where: Selection
    limit: int = Field(default=100, ge=1, le=dlq.MAX_BATCH)


def _listing_filter(
    consumer: str | None = None,
    type: str | None = None,
    reason: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    state: dlq.State = "pending",
) -> dlq.Filter:
    return dlq.Filter(consumer=consumer, type=type, reason=reason, since=since, until=until, state=state)


@contextmanager
def _answering() -> Iterator[None]:
    """The dead-letter errors as HTTP answers: unknown id 404, settled or unreplayable 409."""
    try:
        yield
    except dlq.UnknownDeadLetter as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except dlq.DeadLetterError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


def _require_some(where: Selection) -> dlq.Filter:
    selected = where.filter()
    if selected.is_empty():
        # Acting on every dead letter at once is rarely meant: make it explicit (e.g. `since`).
        raise HTTPException(
            status_code=422, detail="`where` needs at least one of consumer, type, reason, since, until"
        )
    return selected


@router.get("/dead-letters")
async def list_dead_letters(
    session: SessionDep,
    where: Annotated[dlq.Filter, Depends(_listing_filter)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    after: Annotated[int, Query(ge=0, description="the last id of the previous page")] = 0,
) -> dict[str, Any]:
    rows = await dlq.find(session, where, limit=limit, after_id=after)
    return {
        "items": [dlq.as_dict(row) for row in rows],
        "next_after": rows[-1].id if len(rows) == limit else None,
    }


@router.get("/dead-letters/{letter_id}")
async def show_dead_letter(session: SessionDep, letter_id: int) -> dict[str, Any]:
    with _answering():
        return dlq.as_dict(await dlq.get(session, letter_id))


@router.post("/dead-letters/{letter_id}/replay")
async def replay_dead_letter(session: SessionDep, letter_id: int, body: Act) -> dict[str, Any]:
    with _answering():
        replayed = await dlq.replay(session, letter_id, by=body.by)
    await session.commit()
    log.info("dead_letter_replayed", id=letter_id, message_id=str(replayed.message_id), by=body.by)
    return {"id": replayed.id, "message_id": replayed.message_id, "replay_count": replayed.replay_count}


@router.post("/dead-letters/replay")
async def replay_dead_letters(session: SessionDep, body: ActOnMany) -> dict[str, Any]:
    replayed, refused = await dlq.replay_matching(
        session, _require_some(body.where), by=body.by, limit=body.limit
    )
    await session.commit()
    log.info("dead_letters_replayed", count=len(replayed), refused=len(refused), by=body.by)
    return {
        "replayed": [
            {"id": r.id, "message_id": r.message_id, "replay_count": r.replay_count} for r in replayed
        ],
        "refused": [{"id": r.id, "error": r.error} for r in refused],
    }


@router.post("/dead-letters/{letter_id}/discard")
async def discard_dead_letter(session: SessionDep, letter_id: int, body: Act) -> dict[str, Any]:
    with _answering():
        await dlq.discard(session, letter_id, by=body.by)
    await session.commit()
    log.info("dead_letter_discarded", id=letter_id, by=body.by)
    return {"id": letter_id}


@router.post("/dead-letters/discard")
async def discard_dead_letters(session: SessionDep, body: ActOnMany) -> dict[str, Any]:
    discarded = await dlq.discard_matching(session, _require_some(body.where), by=body.by, limit=body.limit)
    await session.commit()
    log.info("dead_letters_discarded", count=len(discarded), by=body.by)
    return {"discarded": discarded}


@router.get("/messages/{message_id}")
async def trace_message(session: SessionDep, message_id: UUID) -> dict[str, Any]:
    return await trace(session, message_id)
