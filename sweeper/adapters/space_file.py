"""Read a search-space file (YAML or JSON) and validate it."""

from __future__ import annotations

from pathlib import Path

from ..errors import SweeperInputError
from ..space import SearchSpace, validate_space


def load_space(path: str | Path) -> SearchSpace:
    """Parse and validate ``path`` (or ``env:NAME``: the text of environment variable NAME).

    Raises:
        SweeperInputError: unreadable file, YAML syntax error (with its line), or any
            validation problem (all of them).
    """
    import os

    import yaml

    if str(path).startswith("env:"):  # how `sweeper submit` hands the file to the cluster
        name = str(path)[4:]
        if name not in os.environ:
            raise SweeperInputError(f"search space variable {name!r} is not set")
        text = os.environ[name]
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SweeperInputError(f"cannot read search space {str(path)!r}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweeperInputError(f"{path}: not valid YAML: {exc}") from None
    try:
        return validate_space(raw)
    except SweeperInputError as exc:
        raise SweeperInputError(f"{path}: {exc}") from None
