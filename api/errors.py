"""The one error body every non-2xx response uses, and the handlers that produce it."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    ERROR_SPECS,
    ErrorCode,
    PindaiError,
    QueueUnavailable,
    StorageUnavailable,
)
from storage import StorageError

# Seconds a client should wait before retrying a 503 or polling a running job again.
RETRY_AFTER_SECONDS = 2


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    code: ErrorCode,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    spec = ERROR_SPECS[code]
    headers = dict(headers or {})
    if spec.http_status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=spec.http_status, headers=headers)


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def error_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """Describe the given error codes for a route's OpenAPI `responses`."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_SPECS[code].http_status, []).append(code)
    return {
        status: {"model": ErrorBody, "description": "Error codes: " + ", ".join(names)}
        for status, names in sorted(by_status.items())
    }


async def _handle_pindai_error(request: Request, error: PindaiError) -> JSONResponse:
    logger.info("request rejected", error_code=error.code, error_message=error.message)
    headers = {}
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if error.code == ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="pindai"'
    return error_response(error.code, error.message, request_id_of(request), headers)


async def _handle_http_exception(
    request: Request, error: StarletteHTTPException
) -> JSONResponse:
    if error.status_code == 404:
        code, message = ErrorCode.NOT_FOUND, f"No route matches {request.url.path}."
    elif error.status_code == 405:
        code = ErrorCode.METHOD_NOT_ALLOWED
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        code, message = ErrorCode.INVALID_REQUEST, str(error.detail)
    response = error_response(code, message, request_id_of(request), error.headers)
    response.status_code = error.status_code
    return response


async def _handle_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    problems = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"{location}: {item.get('msg', 'invalid')}")
    message = "Invalid request: " + "; ".join(problems)
    return error_response(ErrorCode.INVALID_REQUEST, message, request_id_of(request))


async def _handle_redis_error(request: Request, error: RedisError) -> JSONResponse:
    logger.warning("Redis call failed", error=str(error))
    return error_response(
        ErrorCode.QUEUE_UNAVAILABLE,
        QueueUnavailable.default_message,
        request_id_of(request),
    )


async def _handle_storage_error(request: Request, error: StorageError) -> JSONResponse:
    logger.warning("object storage call failed", error=str(error))
    return error_response(
        ErrorCode.STORAGE_UNAVAILABLE,
        StorageUnavailable.default_message,
        request_id_of(request),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Install the one place where exceptions become error responses.

    Routes let Redis and storage failures propagate; they become 503
    `queue_unavailable` or `storage_unavailable` here.
    """
    app.add_exception_handler(PindaiError, _handle_pindai_error)
    app.add_exception_handler(RedisError, _handle_redis_error)
    app.add_exception_handler(StorageError, _handle_storage_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
