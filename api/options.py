"""Options a client sets on a job: form fields on submit, JSON fields on POST /jobs."""

import asyncio
import json
import socket

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis as AsyncRedis

from core.callback_urls import (
    MAX_CALLBACK_URL_LENGTH,
    addresses_from,
    check_addresses,
    parse_allowed_networks,
    parse_callback_url,
)
from core.errors import CallbackUrlRefused, InvalidRequest
from core.heartbeats import available_languages
from core.ocr_options import (
    ALLOWED_PSM,
    LANG_PATTERN,
    MAX_DPI,
    MAX_LANGUAGES,
    MIN_DPI,
    PAGES_PATTERN,
    Mode,
    Output,
    parse_page_ranges,
    split_languages,
)
from core.settings import Settings

# A callback host that takes longer than this to resolve is rejected.
RESOLVE_TIMEOUT_SECONDS = 5.0
MAX_TAG_LENGTH = 256


class JobOptions(BaseModel):
    """The client's settings of one job: OCR, outputs and webhook."""

    model_config = ConfigDict(extra="forbid")

    lang: str | None = Field(
        default=None,
        pattern=LANG_PATTERN,
        description="Tesseract languages joined by +, e.g. eng+ind; "
        "GET /api/v1/ocr/languages lists them. Default: the server's OCR_LANG.",
    )
    pages: str | None = Field(
        default=None,
        max_length=600,
        pattern=PAGES_PATTERN,
        description="PDF and TIFF pages to read, e.g. 1-3,7; MAX_PAGES counts "
        "the pages selected. Default: every page.",
    )
    dpi: int | None = Field(
        default=None,
        ge=MIN_DPI,
        le=MAX_DPI,
        description="Resolution to read every page at, in place of the per-page "
        "choice.",
    )
    psm: int | None = Field(
        default=None,
        description="Tesseract page segmentation mode: 1 or 3 to 13. Default: 3.",
    )
    mode: Mode = Field(
        default=Mode.AUTO,
        description="auto reads the text layer of PDF pages that have one; force "
        "OCRs every page.",
    )
    outputs: list[Output] = Field(
        default=[Output.TEXT],
        description="Results to produce, comma-separated in a form: text (always), "
        "words, hocr, pdf.",
    )

    callback_url: str | None = Field(
        default=None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="http(s) URL that receives a signed POST when the job ends.",
    )
    tag: str | None = Field(
        default=None,
        max_length=MAX_TAG_LENGTH,
        pattern=r"^[\x20-\x7e]*$",
        description="Any printable ASCII text, echoed in the webhook body and lists.",
    )

    @field_validator("psm")
    @classmethod
    def _check_psm(cls, value: int | None) -> int | None:
        if value is not None and value not in ALLOWED_PSM:
            raise ValueError("use 1 or 3 to 13")
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _split_outputs(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("outputs")
    @classmethod
    def _normalize_outputs(cls, value: list[Output]) -> list[Output]:
        # Text is always produced; the order is fixed so equal sets compare equal.
        chosen = {Output.TEXT, *value}
        return [output for output in Output if output in chosen]

    def ocr_options(self) -> dict[str, object]:
        """Return what the workers need, as stored with the job and its stages."""
        options: dict[str, object] = {
            "mode": str(self.mode),
            "outputs": [str(output) for output in self.outputs],
        }
        for name in ("lang", "pages", "dpi", "psm"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options

    def fingerprint(self) -> str:
        """Return a canonical text of the options, for idempotency checks."""
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))


OPTION_FIELDS = frozenset(JobOptions.model_fields)


def options_from_form(fields: dict[str, str]) -> JobOptions:
    """Validate the text fields of a multipart submit; raise InvalidRequest."""
    try:
        return JobOptions.model_validate(fields)
    except ValidationError as error:
        problems = [
            f"form.{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        raise InvalidRequest("Invalid request: " + "; ".join(problems)) from error


async def check_options(
    options: JobOptions, settings: Settings, redis: AsyncRedis
) -> None:
    """Check what pydantic cannot: languages, page count, and the callback's address.

    Raises InvalidRequest or CallbackUrlRefused.
    """
    if options.pages is not None:
        try:
            parse_page_ranges(options.pages, settings.MAX_PAGES)
        except ValueError as error:
            raise InvalidRequest(f"Invalid request: pages: {error}.") from error
    if options.lang is not None:
        await _check_languages(options.lang, settings, redis)
    if options.callback_url is not None:
        await _check_callback(options.callback_url, settings)


async def _check_languages(lang: str, settings: Settings, redis: AsyncRedis) -> None:
    names = split_languages(lang)
    if len(names) > MAX_LANGUAGES:
        raise InvalidRequest(
            f"Invalid request: lang: use at most {MAX_LANGUAGES} languages."
        )
    available = await available_languages(redis, settings)
    missing = [name for name in names if name not in available]
    if missing:
        raise InvalidRequest(
            f"Invalid request: lang: {', '.join(missing)} not installed on the "
            f"workers; available: {', '.join(sorted(available))}."
        )


async def _check_callback(callback_url: str, settings: Settings) -> None:
    secret = settings.WEBHOOK_SECRET
    if secret is None or not secret.get_secret_value():
        raise InvalidRequest(
            "Invalid request: callback_url: this server sends no webhooks because "
            "WEBHOOK_SECRET is not set."
        )
    target = parse_callback_url(callback_url)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
    except (socket.gaierror, UnicodeError, TimeoutError) as error:
        raise CallbackUrlRefused(
            f"The callback host {target.host!r} does not resolve."
        ) from error
    allowed = parse_allowed_networks(settings.WEBHOOK_ALLOWED_NETWORKS)
    check_addresses(target, addresses_from(infos), allowed)
