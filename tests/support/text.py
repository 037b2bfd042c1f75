"""Text comparison for OCR output against ground truth."""

from rapidfuzz.distance import Levenshtein


def normalize(text: str) -> str:
    """Collapse all whitespace to single spaces, so layout does not count as errors."""
    return " ".join(text.split())


def character_error_rate(recognized: str, reference: str) -> float:
    """Edit distance between the normalized texts, divided by the reference length."""
    expected = normalize(reference)
    if not expected:
        return 0.0 if not normalize(recognized) else 1.0
    return Levenshtein.distance(normalize(recognized), expected) / len(expected)


def word_error_rate(recognized: str, reference: str) -> float:
    """Edit distance over words (insertions, deletions, substitutions) per word."""
    expected = reference.split()
    if not expected:
        return 0.0 if not recognized.split() else 1.0
    return Levenshtein.distance(recognized.split(), expected) / len(expected)
