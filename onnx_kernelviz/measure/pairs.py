"""Two kernels told apart or not (METHOD.md, "Similar kernels"): the measure ``compare`` records and the report
and the CLI read, kept here so that reading a compare.json needs neither torch nor the pipeline."""

from __future__ import annotations

__all__ = ["SEPARATION", "DEFAULT_CONTRAST", "separation", "told_apart", "advice"]

#: a pair is told apart when each kernel keeps this many times more of itself than of the other (METHOD.md)
SEPARATION = 1.5
#: ``compare``'s default weight of suppressing the partner in particular; chosen by measurement
#: (docs/EVALUATION.md, scripts/evaluate.py)
DEFAULT_CONTRAST = 12.0
#: filters whose cosine reaches this are near-copies: a mask over the photo cannot keep one without the other
NEAR_COPY = 0.9


def separation(entry: dict) -> float:
    """The smaller of kept_a / kept_b under x'_a and kept_b / kept_a under x'_b (``{"a": {...}, "b": {...}}``)."""
    return min(entry["a"]["kept_a"] / max(entry["a"]["kept_b"], 1e-6),
               entry["b"]["kept_b"] / max(entry["b"]["kept_a"], 1e-6))


def told_apart(entry: dict) -> bool:
    """Each explanation keeps its own kernel at least :data:`SEPARATION` times more than the other."""
    return separation(entry) >= SEPARATION


def advice(method: str, contrast: float, filter_cosine: float | None,
           default_contrast: float = DEFAULT_CONTRAST) -> str:
    """What to try when a pair is not told apart, from what compare.json records."""
    if filter_cosine is not None and filter_cosine >= NEAR_COPY and method == "mask":
        return (f"Their filters are near-copies (cosine {filter_cosine:.2f}): a mask over the photo cannot keep one "
                "without the other; --method pixel can reach inputs that do, at the cost of a lower kept.")
    if contrast == 0:
        return f"Try --contrast {default_contrast:g} to explain each kernel against the other in particular."
    return ("Try another image where only one of them fires, or --method pixel, which can change the photo in "
            "ways a mask cannot.")
