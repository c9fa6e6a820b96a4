"""The one exception type that bad user input raises."""

from __future__ import annotations


class SweeperInputError(ValueError):
    """Raised for invalid arguments; the message names the parameter, the bad value and what is
    allowed. The CLI turns it into exit code 2 without a traceback."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`SweeperInputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SweeperInputError(message)


def unknown_name(kind: str, name: object, known: list[str] | tuple[str, ...]) -> SweeperInputError:
    """An error for a registry miss that lists the known names."""
    return SweeperInputError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
