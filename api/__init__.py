"""The HTTP API: accepts uploads, enqueues OCR jobs, serves status and results."""
