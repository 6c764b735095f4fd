"""Errors the user can act on.

Every error that reaches the CLI is a :class:`KernelvizError`: its message says what is wrong and what to do,
and the CLI prints it as one ``Error: ...`` line (exit status 1, or 2 for :class:`UsageError`).
"""

from __future__ import annotations


class KernelvizError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""

    exit_code = 1


class UsageError(KernelvizError):
    """A malformed command-line argument or API argument (exit status 2)."""

    exit_code = 2


class ModelError(KernelvizError):
    """The model file cannot be read, is unsafe, or cannot be handled."""


class ConversionError(ModelError):
    """onnx2torch cannot convert the model, or the converted copy disagrees with onnxruntime."""


class ImageError(KernelvizError):
    """An image file cannot be read or used."""
