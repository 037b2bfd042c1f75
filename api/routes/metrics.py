"""GET /metrics for Prometheus."""

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import presented_key
from api.errors import error_responses
from api.metrics import render_metrics
from api.routes.ocr import ServicesDep
from core.errors import ErrorCode, Unauthorized

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics."},
        **error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.QUEUE_UNAVAILABLE),
    },
)
async def read_metrics(request: Request, services: ServicesDep) -> Response:
    """Return the metrics in the Prometheus text format.

    When METRICS_TOKEN is set, the scraper sends it as a bearer token.
    """
    token = services.settings.METRICS_TOKEN
    if token is not None and token.get_secret_value():
        presented = presented_key(request) or ""
        if not hmac.compare_digest(
            presented.encode(), token.get_secret_value().encode()
        ):
            raise Unauthorized("Send METRICS_TOKEN as a bearer token.")
    body = await render_metrics(services.async_redis)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
