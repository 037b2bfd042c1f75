"""The `pindai` command-line client of the OCR API."""
