"""Request ids, logs and metrics for every request, and the last-resort 500."""

import time

from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.metrics import UNMATCHED_ROUTE, observe_request
from core.errors import ErrorCode
from core.ids import is_request_id, new_request_id

REQUEST_ID_HEADER = "x-request-id"


class RequestContextMiddleware:
    """Give every request an id, log its start and end, and turn crashes into 500s.

    A client's X-Request-ID is kept when it is a short token of letters, digits and
    `._-`. Anything else is replaced, so the header cannot inject log fields or
    response headers. The id is returned on every response and bound to every log
    line written while the request runs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with logger.contextualize(request_id=request_id):
            logger.info("request started", method=scope["method"], path=scope["path"])
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                logger.exception("request crashed", path=scope["path"])
                if not response_started:
                    response = error_response(
                        ErrorCode.INTERNAL_ERROR,
                        "An unexpected error occurred.",
                        request_id,
                    )
                    await response(scope, receive, send_with_id)
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            observe_request(scope["method"], route, status_code, seconds)
            # The job a request created (set by the submit routes) or named in its
            # path, so that this line joins the job's worker lines.
            job_id = scope["state"].get("job_id") or scope.get("path_params", {}).get(
                "job_id"
            )
            logger.info(
                "request finished",
                method=scope["method"],
                path=scope["path"],
                status=status_code,
                duration_ms=round(seconds * 1000, 1),
                caller=scope["state"].get("caller"),
                **({"job_id": job_id} if job_id else {}),
            )


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if is_request_id(candidate):
                return candidate
            break
    return new_request_id()
