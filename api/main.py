"""The FastAPI application, served by Uvicorn as `api.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from loguru import logger

from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware
from api.routes import health, jobs, languages, metrics, ocr, uploads, usage
from api.services import open_services, prepare_storage
from core.logs import configure_logging
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            await prepare_storage(services)
            if not services.api_keys:
                logger.warning(
                    "API_KEYS is empty: every /api/v1/ocr route is open to anyone who "
                    "can reach this server. Set API_KEYS before exposing it "
                    "(python -m api.keys NAME makes a key)."
                )
            token = settings.METRICS_TOKEN
            if services.api_keys and (token is None or not token.get_secret_value()):
                logger.warning(
                    "METRICS_TOKEN is empty: /metrics, which names every API key, is "
                    "open to anyone who can reach this server."
                )
            logger.info(
                "api started",
                storage_backend=settings.STORAGE_BACKEND,
                max_upload_bytes=settings.MAX_UPLOAD_BYTES,
            )
            yield
        logger.info("api stopped")

    app = FastAPI(
        title="pindai",
        summary="Asynchronous OCR: upload a scan, get a job id, fetch the text.",
        version="0.1.0",
        lifespan=lifespan,
        # A trailing slash gets the usual 404 error body instead of a bare redirect,
        # which curl -F would not follow.
        redirect_slashes=False,
    )
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(languages.router)
    app.include_router(ocr.router)
    app.include_router(jobs.router)
    app.include_router(uploads.uploads_router)
    app.include_router(uploads.jobs_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(usage.router)
    return app


def _create_default_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)
    return create_app(settings)


app = _create_default_app()
