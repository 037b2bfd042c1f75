"""Loguru set-up shared by the API and the workers.

One JSON object per line on stdout (LOG_JSON=true) or readable lines for a terminal.
Records from the standard `logging` module (Uvicorn, RQ, botocore) are routed into the
same sink, so every line of a process has one format.
"""

import json
import logging
import sys
import traceback
from typing import Any

from loguru import logger


class InterceptHandler(logging.Handler):
    """Forward standard-library log records to Loguru, keeping level and origin."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info, depth=0).bind(
            logger_name=record.name
        ).log(level, record.getMessage())


def _json_sink(message: Any) -> None:
    record = message.record
    line: dict[str, Any] = {
        "ts": record["time"].isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "logger": record["extra"].get("logger_name", record["name"]),
        "message": record["message"],
    }
    for name, value in record["extra"].items():
        if name != "logger_name":
            line[name] = value
    if record["exception"] is not None:
        line["exception"] = "".join(_format_exception(record["exception"]))
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


def _format_exception(exception: Any) -> list[str]:
    return traceback.format_exception(
        exception.type, exception.value, exception.traceback
    )


_TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[logger_name]}</cyan> {message} <dim>{extra[context]}</dim>"
)


def _add_text_context(record: Any) -> None:
    extra = record["extra"]
    extra.setdefault("logger_name", record["name"])
    context = {
        key: value
        for key, value in extra.items()
        if key not in ("logger_name", "context")
    }
    extra["context"] = " ".join(f"{key}={value}" for key, value in context.items())


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Replace every Loguru and standard-library handler with the one pindai sink."""
    logger.remove()
    if json_lines:
        logger.add(_json_sink, level=level.upper(), backtrace=False, diagnose=False)
    else:
        logger.configure(patcher=_add_text_context)
        logger.add(
            sys.stdout,
            level=level.upper(),
            format=_TEXT_FORMAT,
            colorize=sys.stdout.isatty(),
            backtrace=False,
            diagnose=False,
        )

    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    # uvicorn.access is left alone: the API logs each request itself, and Uvicorn's
    # --no-access-log setting must keep working.
    for name in ("uvicorn", "uvicorn.error", "rq", "rq.worker"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    # botocore logs request details, including signed URLs, at DEBUG, and httpx logs
    # every request URL at INFO: webhook URLs may carry a receiver's token.
    for name in (
        "botocore",
        "boto3",
        "aiobotocore",
        "urllib3",
        "s3transfer",
        "httpx",
        "httpcore",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
