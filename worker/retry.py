"""Bounded retries with exponential back-off for transient storage and Redis errors."""

import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage import StorageError

T = TypeVar("T")

TRANSIENT_ERRORS = (StorageError, RedisConnectionError, RedisTimeoutError)
ATTEMPTS = 4
FIRST_DELAY_SECONDS = 0.5


def retry_transient(action: Callable[[], T], *, operation: str) -> T:
    """Run `action`, retrying transient errors up to ATTEMPTS times in all.

    The waits double from FIRST_DELAY_SECONDS (0.5, 1, 2 s: 3.5 s at most). Errors
    about the input, such as a missing object, are raised at once.
    """
    delay = FIRST_DELAY_SECONDS
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except TRANSIENT_ERRORS as error:
            if attempt == ATTEMPTS:
                raise
            logger.warning(
                "transient error; retrying",
                operation=operation,
                attempt=attempt,
                delay_s=delay,
                error=str(error),
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
