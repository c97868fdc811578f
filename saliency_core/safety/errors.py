"""The one exception the safety checks raise, and clean messages from any exception."""

from __future__ import annotations

import re


class UnsafeUploadError(ValueError):
    """An upload is refused before it could harm the server; the message is for the user."""


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.]{1,80}")


def quote_name(value: object) -> str:
    """A name from an uploaded file, fit to show (in backticks), or ``""``.

    Names from a file can carry Markdown or HTML; a refusal message only ever
    repeats a name made of letters, digits, dots and underscores.
    """
    if isinstance(value, str) and _SAFE_NAME.fullmatch(value):
        return f"`{value}`"
    return ""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the process ran out of memory: Python's ``MemoryError``, or a
    library's own words for it (TensorFlow's ``ResourceExhaustedError`` and "OOM when
    allocating", C++'s ``bad_alloc``), which would otherwise read as some other failure."""
    text = f"{type(exc).__name__} {exc}"
    return isinstance(exc, MemoryError) or bool(_OUT_OF_MEMORY.search(text))


_OUT_OF_MEMORY = re.compile(r"ResourceExhausted|out of memory|\bOOM\b|bad_alloc", re.IGNORECASE)


def describe_exception(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of ``exc`` for a user, never empty, never a traceback.

    Library wording in parentheses (for example h5py's "(Truncated File Read)")
    and file paths are dropped; an exception without a message is named by
    what it means (``MemoryError`` becomes "it ran out of memory").
    """
    if isinstance(exc, MemoryError):
        return "it ran out of memory"
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    message = str(exc)
    highlighted = re.search(r"\x1b\[1m(.*?)\x1b\[0m", message, re.DOTALL)
    if highlighted:  # Keras puts the cause of "Exception encountered when calling" in bold
        message = highlighted.group(1)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"\s*\([^()]*\)", "", text)  # library detail in parentheses
    text = re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"]+", "<path>", text)  # no server paths
    text = text.strip(" .:")
    if not text:
        return f"an unexpected {type(exc).__name__}"
    return text[:limit]
