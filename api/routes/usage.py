"""GET /api/v1/usage: the caller's jobs, pages and bytes per day."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import CallerDep
from api.errors import error_responses
from api.routes.ocr import ServicesDep
from api.schemas import DayUsage, Usage, UsageCounts
from core.errors import ErrorCode
from core.usage import USAGE_FIELDS, USAGE_RETENTION_DAYS, read_usage

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])


@router.get(
    "",
    response_model=Usage,
    responses=error_responses(ErrorCode.INVALID_REQUEST, ErrorCode.QUEUE_UNAVAILABLE),
)
async def read_caller_usage(
    services: ServicesDep,
    caller: CallerDep,
    days: Annotated[
        int,
        Query(ge=1, le=USAGE_RETENTION_DAYS, description="UTC days, today included."),
    ] = 30,
) -> Usage:
    """Return the caller's usage per UTC day, newest first, and the sums."""
    per_day = await read_usage(services.async_redis, caller.name, days)
    totals = {name: sum(getattr(day, name) for day in per_day) for name in USAGE_FIELDS}
    return Usage(
        caller=caller.name,
        days=[
            DayUsage(
                date=day.day.isoformat(),
                **{name: getattr(day, name) for name in USAGE_FIELDS},
            )
            for day in per_day
        ],
        total=UsageCounts(**totals),
    )
