"""The RQ function that POSTs a job's outcome to its callback URL, once per attempt.

Scheduling, signing and the delivery records are in core.webhooks. Each attempt
resolves the callback host again, checks every address, and connects to a checked
address, with the original host name sent as Host and as the TLS server name.
Redirects are not followed, because a redirect could point at a forbidden address.
"""

import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlunsplit

import httpx
from loguru import logger
from redis import Redis
from rq import get_current_job

from core.callback_urls import (
    CallbackTarget,
    IPAddress,
    check_addresses,
    parse_allowed_networks,
    parse_callback_url,
    resolve,
)
from core.errors import NotSupported, PindaiError
from core.jobs import JobRecord, format_timestamp, result_path, utc_now
from core.jobstore import JobStore
from core.metrics import WEBHOOK_DELIVERIES, recording
from core.settings import Settings, get_settings
from core.webhooks import (
    DELIVERY_HEADER,
    EVENT,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryAttempt,
    build_payload,
    deliveries_key,
    encode_body,
    finish_delivery,
    record_attempt,
    retry_delay_seconds,
    schedule_retry,
    sign,
)

USER_AGENT = "pindai-webhooks/0.1"
# Receivers reply with an empty body or a short acknowledgement; the rest is dropped.
MAX_RESPONSE_BYTES = 64 * 1024
# Error texts kept in delivery records are cut to this length.
MAX_ERROR_CHARS = 200


def deliver_webhook(job_id: str) -> str:
    """Make one delivery attempt for an ended job; return its outcome."""
    rq_job = get_current_job()
    if rq_job is None:
        raise RuntimeError("pindai job functions run only inside an RQ worker")
    connection = rq_job.connection
    settings = get_settings()
    record = JobStore(connection, settings).get(job_id)
    if record is None or not record.callback_url:
        # Deleted or expired since it ended: there is nothing left to report.
        finish_delivery(connection, job_id)
        logger.info("webhook dropped: the job no longer exists", job_id=job_id)
        return "dropped"
    with logger.contextualize(job_id=job_id, request_id=record.request_id):
        return attempt_delivery(connection, settings, record)


def attempt_delivery(connection: Redis, settings: Settings, record: JobRecord) -> str:
    """POST the outcome of `record` once, record the attempt, and schedule a retry.

    Returns the attempt's outcome: delivered, failed or rejected.
    """
    number = int(connection.llen(deliveries_key(record.job_id))) + 1
    started = time.monotonic()
    attempted_at = format_timestamp(utc_now())
    outcome, status_code, error = _send(connection, settings, record)
    _conclude(
        connection,
        settings,
        DeliveryAttempt(
            attempt=number,
            attempted_at=attempted_at,
            outcome=outcome,
            status_code=status_code,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        ),
        record.job_id,
        _host_of(record.callback_url or ""),
    )
    return outcome


def record_lost_delivery(connection: Redis, settings: Settings, job_id: str) -> None:
    """Count a delivery whose work horse died as a failed attempt, and retry it."""
    number = int(connection.llen(deliveries_key(job_id))) + 1
    attempt = DeliveryAttempt(
        attempt=number,
        attempted_at=format_timestamp(utc_now()),
        outcome="failed",
        status_code=None,
        error="The worker making the delivery died.",
        duration_ms=0,
    )
    with logger.contextualize(job_id=job_id):
        _conclude(connection, settings, attempt, job_id, "unknown")


def _conclude(
    connection: Redis,
    settings: Settings,
    attempt: DeliveryAttempt,
    job_id: str,
    host: str,
) -> None:
    """Schedule the retry or end the delivery, then record and log the attempt."""
    retry_at = None
    if attempt.outcome == "failed" and attempt.attempt < settings.WEBHOOK_MAX_ATTEMPTS:
        retry_at = time.time() + retry_delay_seconds(settings, attempt.attempt)
        schedule_retry(connection, job_id, retry_at)
        attempt.next_attempt_at = _format_epoch(retry_at)
    else:
        finish_delivery(connection, job_id)
    record_attempt(connection, job_id, attempt, settings.RESULT_TTL_SECONDS)
    with recording(connection) as pipeline:
        WEBHOOK_DELIVERIES.increment(pipeline, outcome=attempt.outcome)
    _log(attempt, target_host=host, last=retry_at is None)


def _send(
    connection: Redis, settings: Settings, record: JobRecord
) -> tuple[str, int | None, str | None]:
    """Check the callback's addresses and POST; return (outcome, status, error)."""
    secret = settings.WEBHOOK_SECRET
    try:
        if secret is None or not secret.get_secret_value():
            raise NotSupported("WEBHOOK_SECRET is not set on the workers.")
        target = parse_callback_url(record.callback_url or "")
        addresses = resolve(target)
        allowed = parse_allowed_networks(settings.WEBHOOK_ALLOWED_NETWORKS)
        check_addresses(target, addresses, allowed)
    except PindaiError as refused:
        return "rejected", None, refused.message

    base_url = (settings.PUBLIC_BASE_URL or record.base_url or "").rstrip("/")
    payload = build_payload(
        record,
        JobStore(connection, settings).get_pages(record.job_id),
        base_url + result_path(record.job_id),
    )
    body = encode_body(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": target.host_header,
        EVENT_HEADER: EVENT,
        DELIVERY_HEADER: record.job_id,
        SIGNATURE_HEADER: sign(secret.get_secret_value(), int(time.time()), body),
    }
    error = None
    for address in addresses:
        try:
            status_code = _post(target, address, body, headers, settings)
        except httpx.ConnectError as failure:
            # The host may have several addresses; the next one may accept.
            error = _describe(failure)
            continue
        except Exception as failure:
            # Whatever went wrong (a time-out, a malformed response, a URL httpx
            # rejects) is this attempt's failure, recorded and retried.
            return "failed", None, _describe(failure)
        if 200 <= status_code < 300:
            return "delivered", status_code, None
        return "failed", status_code, f"The receiver returned HTTP {status_code}."
    return "failed", None, error


def _post(
    target: CallbackTarget,
    address: IPAddress,
    body: bytes,
    headers: dict[str, str],
    settings: Settings,
) -> int:
    """POST `body` to `address`, naming the target host in Host and for TLS.

    The whole exchange must end within WEBHOOK_TIMEOUT_SECONDS: httpx's own time
    limits apply to each read, so a receiver that sends a byte a second would never
    reach them. So the request runs in a daemon thread, abandoned when the time is
    up. The work horse exits after the attempt, which closes the thread's socket.
    At most MAX_RESPONSE_BYTES of the response body are read.
    """
    literal = f"[{address}]" if address.version == 6 else str(address)
    url = urlunsplit(
        (
            target.url.scheme,
            f"{literal}:{target.port}",
            target.url.path or "/",
            target.url.query,
            "",
        )
    )
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["status"] = _exchange(url, body, headers, target.host, settings)
        except Exception as error:
            # Raised again in the waiting thread.
            outcome["error"] = error

    sender = threading.Thread(target=send, name="pindai-webhook", daemon=True)
    sender.start()
    sender.join(settings.WEBHOOK_TIMEOUT_SECONDS)
    if sender.is_alive():
        limit = settings.WEBHOOK_TIMEOUT_SECONDS
        raise DeliveryTimeout(f"The receiver's response took longer than {limit:g} s.")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["status"]


def _exchange(
    url: str, body: bytes, headers: dict[str, str], host: str, settings: Settings
) -> int:
    # trust_env=False: a proxy from the environment would make its own connection
    # to the host name, bypassing the address check.
    with (
        httpx.Client(
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        ) as client,
        client.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            extensions={"sni_hostname": host},
        ) as response,
    ):
        received = 0
        for chunk in response.iter_raw():
            received += len(chunk)
            if received >= MAX_RESPONSE_BYTES:
                break
        return response.status_code


class DeliveryTimeout(Exception):
    """The receiver's response did not end within WEBHOOK_TIMEOUT_SECONDS."""


def _log(attempt: DeliveryAttempt, *, target_host: str, last: bool) -> None:
    # The host only: a callback URL's path and query may carry a receiver's token.
    fields = {
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "callback_host": target_host,
        "duration_ms": attempt.duration_ms,
    }
    if attempt.outcome == "delivered":
        logger.info("webhook delivered", **fields)
    elif last:
        logger.warning("webhook abandoned", error=attempt.error, **fields)
    else:
        logger.info("webhook attempt failed; will retry", error=attempt.error, **fields)


def _describe(failure: Exception) -> str:
    return f"{type(failure).__name__}: {failure}"[:MAX_ERROR_CHARS]


def _host_of(url: str) -> str:
    try:
        return parse_callback_url(url).host
    except PindaiError:
        return "invalid"


def _format_epoch(moment: float | None) -> str | None:
    if moment is None:
        return None
    return format_timestamp(datetime.fromtimestamp(moment, UTC))
