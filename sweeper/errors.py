"""The one exception type that bad user input raises."""

from __future__ import annotations

import math
import numbers


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


# The value rules: each written once, used by measure(), the configs, the search-space
# validator and the tasks, all with one message shape:
#     "<name> must be <what is allowed>, got <name>=<value>"


def is_integer(value: object) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A finite real number, not a bool. An int too large for a float counts as infinite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def invalid(name: str, value: object, allowed: str) -> SweeperInputError:
    """The error for ``name=value`` that breaks the rule described by ``allowed``."""
    return SweeperInputError(f"{name} must be {allowed}, got {name}={value!r}")


def integer(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]; ``hidden_size must be an integer >= 1, got
    hidden_size=-3`` otherwise."""
    if maximum is None:
        allowed = f"an integer >= {minimum}"
    else:
        allowed = f"an integer from {minimum} to {maximum}"
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        raise invalid(name, value, allowed)
    return int(value)


def optional_integer(name: str, value: object, minimum: int = 1) -> int | None:
    """None, or an integer >= minimum."""
    if value is None:
        return None
    if not is_integer(value) or value < minimum:
        raise invalid(name, value, f"None or an integer >= {minimum}")
    return int(value)


def number(name: str, value: object, *, above: float | None = None,
           at_least: float | None = None, below: float | None = None,
           at_most: float | None = None) -> float:
    """``value`` as a finite float within the given bounds (``above``/``below`` exclusive,
    ``at_least``/``at_most`` inclusive)."""
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if at_least is not None:
        parts.append(f">= {at_least:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    if at_most is not None:
        parts.append(f"<= {at_most:g}")
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
    if not is_finite_number(value):
        raise invalid(name, value, allowed)
    v = float(value)
    if ((above is not None and not v > above) or (at_least is not None and not v >= at_least)
            or (below is not None and not v < below) or (at_most is not None and not v <= at_most)):
        raise invalid(name, value, allowed)
    return v


def choice(name: str, value: object, allowed: list | tuple) -> object:
    """``value`` if it is one of ``allowed``."""
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise invalid(name, value, f"one of {list(allowed)}")
    return value


def value_list(name: str, values: object, *, integer: bool = False,
               minimum: float = 0) -> list:
    """A non-empty list of finite numbers (or integers) >= minimum; a scalar is a list of one."""
    kind = "integers" if integer else "finite numbers"
    allowed = f"a non-empty list of {kind} >= {minimum:g}"
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, (str, bytes)):
        raise invalid(name, values, allowed)
    try:
        items = list(values)
    except TypeError:
        raise invalid(name, values, allowed) from None
    if not items:
        raise invalid(name, items, allowed)
    out = []
    for v in items:
        ok = is_integer(v) if integer else is_finite_number(v)
        if not ok or v < minimum:
            raise invalid(name, v, allowed)
        out.append(int(v) if integer else float(v))
    return out
