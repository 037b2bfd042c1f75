"""Runtime configuration, read once from environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.callback_urls import parse_allowed_networks


class Settings(BaseSettings):
    """Every setting of the API and the workers; field names are the variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")

    # Broker and status store
    REDIS_URL: str = "redis://localhost:6379/0"
    REDIS_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)

    # Object storage
    STORAGE_BACKEND: Literal["local", "s3"] = "local"
    STORAGE_DIR: Path = Path("./data/storage")
    S3_BUCKET: str | None = None
    S3_ENDPOINT_URL: str | None = None
    S3_REGION: str | None = None
    S3_ADDRESSING_STYLE: Literal["auto", "path", "virtual"] = "auto"
    # The endpoint clients reach, for presigned URLs (inside compose the API reaches
    # MinIO as http://minio:9000, which a client outside cannot resolve).
    S3_PUBLIC_ENDPOINT_URL: str | None = None
    S3_MANAGE_LIFECYCLE: bool = True
    UPLOAD_URL_TTL_SECONDS: int = Field(default=900, ge=60, le=7 * 86_400)
    AWS_ACCESS_KEY_ID: str | None = None
    AWS_SECRET_ACCESS_KEY: SecretStr | None = None

    # Access: comma-separated `name:sha256-hex` entries; empty runs the API open.
    API_KEYS: str = ""
    RATE_LIMIT_PER_MINUTE: int = Field(default=600, ge=0)
    MAX_ACTIVE_JOBS: int = Field(default=50, ge=0)
    # Bearer token that GET /metrics requires; empty serves the metrics to anyone.
    METRICS_TOKEN: SecretStr | None = None

    # Upload and document limits
    MAX_UPLOAD_BYTES: int = Field(default=10 * 1024 * 1024, gt=0)
    UPLOAD_TIMEOUT_SECONDS: float = Field(default=300.0, gt=0)
    UPLOAD_IDLE_SECONDS: float = Field(default=30.0, gt=0)
    MAX_PAGES: int = Field(default=20, gt=0)
    MAX_IMAGE_PIXELS: int = Field(default=50_000_000, gt=0)
    RESULT_TTL_SECONDS: int = Field(default=86_400, gt=0)

    # OCR
    OCR_DPI: int = Field(default=300, ge=50, le=600)
    OCR_LANG: str = Field(default="eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")
    # Detect each page's orientation with Tesseract's OSD (when the osd pack is
    # installed) and turn pages whose estimate reaches the confidence threshold.
    OCR_DETECT_ORIENTATION: bool = True
    OCR_ROTATION_MIN_CONFIDENCE: float = Field(default=2.0, ge=0)
    # Level pages scanned up to 5 degrees off before OCR.
    OCR_DESKEW: bool = True
    PAGE_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    RASTER_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    TOOL_MEMORY_LIMIT_MB: int = Field(default=2048, ge=0)
    MAX_ATTEMPTS: int = Field(default=3, ge=1, le=10)
    LEASE_SECONDS: int = Field(default=30, ge=5)
    SHUTDOWN_HANDOFF_SECONDS: float = Field(default=10.0, ge=0)

    # Webhooks. Without a secret, a job with a callback_url is rejected.
    WEBHOOK_SECRET: SecretStr | None = None
    # Comma-separated networks (CIDR) that callbacks may reach although they are
    # loopback, private or link-local, e.g. 10.0.0.0/8 for receivers inside a VPC.
    WEBHOOK_ALLOWED_NETWORKS: str = ""
    WEBHOOK_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    WEBHOOK_MAX_ATTEMPTS: int = Field(default=6, ge=1, le=20)
    # The first retry waits this long, and every later one four times longer.
    WEBHOOK_RETRY_SECONDS: float = Field(default=30.0, gt=0)
    # The API's address as clients reach it, for absolute URLs in webhook bodies;
    # empty uses the address each job was submitted to.
    PUBLIC_BASE_URL: str = ""

    # Logging
    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool = True

    @field_validator("WEBHOOK_ALLOWED_NETWORKS")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_allowed_networks(value)
        return value

    @field_validator("PUBLIC_BASE_URL")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("PUBLIC_BASE_URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _require_bucket_for_s3(self) -> "Settings":
        if self.STORAGE_BACKEND == "s3" and not self.S3_BUCKET:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        return self


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()
