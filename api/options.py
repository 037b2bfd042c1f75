"""Options a client sets on a job: form fields on submit, JSON fields on POST /jobs."""

import asyncio
import json
import socket

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.callback_urls import (
    MAX_CALLBACK_URL_LENGTH,
    addresses_from,
    check_addresses,
    parse_allowed_networks,
    parse_callback_url,
)
from core.errors import CallbackUrlRefused, InvalidRequest
from core.settings import Settings

# A callback host that takes longer than this to resolve is rejected.
RESOLVE_TIMEOUT_SECONDS = 5.0
MAX_TAG_LENGTH = 256


class JobOptions(BaseModel):
    """The client's settings of one job: its webhook and its tag."""

    model_config = ConfigDict(extra="forbid")

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


async def check_options(options: JobOptions, settings: Settings) -> None:
    """Check what pydantic cannot: that webhooks are on and the callback may be reached.

    Raises InvalidRequest or CallbackUrlRefused.
    """
    if options.callback_url is None:
        return
    secret = settings.WEBHOOK_SECRET
    if secret is None or not secret.get_secret_value():
        raise InvalidRequest(
            "Invalid request: callback_url: this server sends no webhooks because "
            "WEBHOOK_SECRET is not set."
        )
    target = parse_callback_url(options.callback_url)
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
