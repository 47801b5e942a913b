"""FastAPI dependencies, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from .broker import Publisher


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The endpoint owns the transaction: it commits; anything uncommitted is rolled back here.
    async with request.app.state.sessionmaker() as session:
        yield session


def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


SessionDep = Annotated[AsyncSession, Depends(get_session)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
