"""Settings module for `rq worker -c worker.rq_settings`.

RQ imports it before it configures logging, so the Loguru sink installed here takes
RQ's own log records too, and RQ adds no handler of its own.
"""

from core.logs import configure_logging
from core.settings import get_settings

_settings = get_settings()
configure_logging(_settings.LOG_LEVEL, _settings.LOG_JSON)

# Documents first: a small job waits only for pages already running, not for every
# page of a long document queued before it. Webhook deliveries, each bounded by
# WEBHOOK_TIMEOUT_SECONDS, come before pages so that a backlog does not delay them.
QUEUES = ["default", "webhooks", "pages"]
