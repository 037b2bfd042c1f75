"""The RQ job functions and the wrappers around Tesseract, poppler and Pillow."""
