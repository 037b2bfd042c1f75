"""GET /api/v1/ocr/languages: the OCR languages the running workers can read."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import CallerDep
from api.errors import error_responses
from api.routes.ocr import ServicesDep
from core.errors import ErrorCode
from core.heartbeats import available_languages, live_languages
from core.ocr_options import OSD_LANGUAGE

router = APIRouter(prefix="/api/v1/ocr/languages", tags=["ocr"])


class Languages(BaseModel):
    languages: list[str] = Field(
        description="Values for `lang`, joined by + to combine them (eng+ind)."
    )
    default: str = Field(description="The language used when `lang` is not given.")
    orientation_detection: bool = Field(
        description="True when the workers have Tesseract's osd data, so sideways "
        "and upside-down pages are turned upright."
    )


@router.get(
    "",
    response_model=Languages,
    responses=error_responses(ErrorCode.QUEUE_UNAVAILABLE),
)
async def list_languages(services: ServicesDep, caller: CallerDep) -> Languages:
    """List the languages of the live workers (union of what each has installed).

    Until a worker has started, the languages of OCR_LANG are listed.
    """
    published = await live_languages(services.async_redis)
    languages = await available_languages(services.async_redis, services.settings)
    return Languages(
        languages=sorted(languages),
        default=services.settings.OCR_LANG,
        orientation_detection=OSD_LANGUAGE in published,
    )
