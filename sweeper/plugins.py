"""Plug-ins: classes found by entry-point name or by a ``"package.module:Class"`` path.

Tasks (``rnn_sweeper.tasks``) and cells (``rnn_sweeper.cells``) resolve the same way. A broken
plug-in (a syntax error, a raise while importing, a missing name, a class of the wrong kind)
is a :class:`~sweeper.errors.SweeperInputError` naming the plug-in and the failure, never a
traceback, and affects only its own name. Plain Python: listing plug-ins imports none.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points

from .errors import SweeperInputError, unknown_name

PATH_HINT = "module.path:Class"


@functools.cache
def registered(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name. Read once per process: installing a package
    takes effect in the next one."""
    return {ep.name: ep for ep in entry_points(group=group)}


def import_failure(exc: BaseException) -> str:
    """The first line of an import's failure, with its type: what a user needs to find it
    (``SyntaxError: invalid syntax (mymod.py, line 3)``)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def load_class(kind: str, group: str, name: str, base: type, base_name: str,
               builtin: tuple[str, ...] = ()) -> type:
    """The class a plug-in name stands for, checked to be a subclass of ``base``.

    Args:
        kind: what is loaded, for messages ("task", "cell").
        group: the entry-point group searched for a bare name.
        name: a registered name or a ``"package.module:Class"`` path.
        base: the class the plug-in must derive from; base_name: its public name.
        builtin: names the caller resolves itself, listed as known in the message.

    Raises:
        SweeperInputError: an unknown name (listing the known ones), an import that fails,
            a missing attribute, or something that is not a ``base`` subclass.
    """
    if ":" in name:
        return _imported(kind, name, base, base_name)
    if name in registered(group):
        return _registered(kind, group, name, base, base_name)
    raise unknown_name(kind, name, [*sorted({*builtin, *registered(group)}), PATH_HINT])


@functools.cache
def _registered(kind: str, group: str, name: str, base: type, base_name: str) -> type:
    try:
        cls = registered(group)[name].load()
    except Exception as exc:  # whatever a plug-in's import raises is its own failure
        raise SweeperInputError(f"cannot load {kind} {name!r} registered under {group}: "
                                f"{import_failure(exc)}") from exc
    return _checked(kind, name, cls, base, base_name)


def _imported(kind: str, path: str, base: type, base_name: str) -> type:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a syntax error, or a raise in the user's module
        raise SweeperInputError(f"cannot load {kind} {path!r}: importing module "
                                f"{module_name!r} failed: {import_failure(exc)}") from exc
    try:
        cls = getattr(module, attr)
    except (AttributeError, TypeError) as exc:
        raise SweeperInputError(f"cannot load {kind} {path!r}: module {module_name!r} has no "
                                f"attribute {attr!r}") from exc
    return _checked(kind, path, cls, base, base_name)


def _checked(kind: str, name: str, cls: object, base: type, base_name: str) -> type:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise SweeperInputError(f"{kind} {name!r} is {cls!r}, not a subclass of {base_name}")
    return cls
