"""Read a search-space file (YAML or JSON) and validate it; and the machine figure that
:func:`sweeper.space.check_size` compares a sweep with.

The file is read by :class:`SpaceLoader`, PyYAML's safe loader with two fixes (PyYAML itself is
left as it is for everyone else): floats read as YAML 1.2 reads them (``1e-3`` is a number, not
the string YAML 1.1 makes of it), and a key given twice in one mapping is an error naming its
path and both lines instead of the last one silently winning. Before anything is built the
node tree is checked: no recursive aliases, no tags the safe loader cannot build, at most
MAX_NODES values (aliases counted each time they are used) and MAX_FILE_BYTES of text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import SweeperInputError
from ..space import SearchSpace, validate_space

MAX_FILE_BYTES = 2**20  # a search space is a few hundred bytes; PyYAML reads slowly
MAX_NODES = 100_000  # values after alias expansion: stops "billion laughs" files
MERGE_TAG = "tag:yaml.org,2002:merge"
# What SafeConstructor raises on a scalar its tag cannot build (`!!int abc`, `!!bool x`,
# `!!timestamp x`, `? !!set {} : 1`): only YAMLError is PyYAML's own.
BAD_SCALAR = (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError)
# YAML 1.2 core schema floats that YAML 1.1's resolver leaves as strings: an exponent without
# a dot or without a sign (1e-3, 1E5, 2.5e3). Integers never match: they need a dot or 'e'.
YAML12_FLOAT = re.compile(r"""^[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
                              |[0-9]+[eE][-+]?[0-9]+)$""", re.X)


class SpaceLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2 floats (``1e-3``, ``1e308``) as numbers.

    ``.inf`` and ``.nan`` stay floats (inf and nan) for validation to reject; ``1e400``
    becomes inf too. The resolver is added to this subclass only (``add_implicit_resolver``
    copies the table into the class it is called on).
    """


SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT,
                                  list("-+0123456789."))


def machine_memory_bytes() -> int:
    """Physical memory of this machine, or the container's limit (cgroup v2 or v1) when lower:
    what ``sweeper run`` and ``sweeper validate`` pass to :func:`sweeper.space.check_size`."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" means no limit; v1 reports a huge number for none
            return min(physical, int(text))
    return physical


def _read_text(path: str | Path) -> str:
    if str(path).startswith("env:"):  # how `sweeper submit` hands the file to the cluster
        name = str(path)[4:]
        if name not in os.environ:
            raise SweeperInputError(f"search space variable {name!r} is not set")
        data = os.environ[name].encode()
    else:
        try:
            with open(path, "rb") as handle:  # bounded: the path may be /dev/zero or a pipe
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise SweeperInputError(f"cannot read search space {str(path)!r}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SweeperInputError(f"{path}: more than {MAX_FILE_BYTES} bytes; a search space "
                                f"file is at most {MAX_FILE_BYTES} bytes (generators such as "
                                "{linspace: [lo, hi, n]} describe long axes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SweeperInputError(f"{path}: not UTF-8 text: byte {data[exc.start]:#04x} at "
                                f"offset {exc.start}") from None


def _places(first: yaml.Node, second: yaml.Node) -> str:
    """'lines 3 and 5', or 'line 3, columns 2 and 9' for a flow mapping on one line."""
    (l1, c1), (l2, c2) = ((n.start_mark.line + 1, n.start_mark.column + 1)
                          for n in (first, second))
    return f"lines {l1} and {l2}" if l1 != l2 else f"line {l1}, columns {c1} and {c2}"


def tree_problems(loader: SpaceLoader, root: yaml.Node) -> list[str]:
    """Problems of a composed document, each as 'key.path: what'.

    Duplicate keys (at any depth), recursive aliases, tags the safe loader cannot build,
    scalars that do not build (``!!int abc``) and more than MAX_NODES values. Every scalar is
    built here once (the loader caches it for the document), so a bad one is named by path.
    """
    problems: list[str] = []
    known_tags = set(loader.yaml_constructors)
    count = 0
    # Iterative, so that depth costs no Python stack; ancestors detect recursive aliases.
    stack: list[tuple[yaml.Node, str, frozenset[int]]] = [(root, "", frozenset())]
    while stack:
        node, path, ancestors = stack.pop()
        where = path or "(document)"
        count += 1
        if count > MAX_NODES:
            problems.append(f"{where}: more than {MAX_NODES} values (aliases counted each time "
                            "they are used); a search space has far fewer")
            return problems
        if id(node) in ancestors:
            problems.append(f"{where}: an alias refers to a node that contains it (recursive "
                            "YAML); a search space is a tree")
            continue
        if node.tag not in known_tags:
            problems.append(f"{where}: YAML tag {node.tag!r} is not allowed; use plain values, "
                            "lists and mappings")
            continue
        inside = ancestors | {id(node)}
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except BAD_SCALAR as exc:
                problems.append(f"{where}: cannot read {node.value!r} as {node.tag!r} (line "
                                f"{node.start_mark.line + 1}): {exc}")
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", inside)
                         for i, item in reversed(list(enumerate(node.value))))
        else:
            seen: dict[Any, yaml.Node] = {}
            children = []
            for key, value in node.value:
                if key.tag == MERGE_TAG:  # `<<: *base`: explicit keys override merged ones
                    children.append((value, path, inside))
                    continue
                line = key.start_mark.line + 1
                if not isinstance(key, yaml.ScalarNode):
                    problems.append(f"{where}: the key at line {line} is a {key.id}; keys "
                                    "are plain names")
                    continue
                try:  # as the mapping will hold it: `cell` and `"cell"` are one key
                    name = loader.construct_object(key)
                    hash(name)
                except BAD_SCALAR as exc:
                    problems.append(f"{where}: cannot read the key {key.value!r} at line "
                                    f"{line}: {exc}")
                    continue
                child = f"{path}.{name}" if path else str(name)
                if name in seen:
                    problems.append(f"{child}: duplicate key ({_places(seen[name], key)}); a "
                                    "key may appear once in a mapping")
                    continue
                seen[name] = key
                children.append((value, child, inside))
            stack.extend(reversed(children))
    return problems


def parse_space_text(text: str, source: str = "search space") -> Any:
    """The YAML (or JSON) ``text`` as plain Python values, read by :class:`SpaceLoader`.

    Raises:
        SweeperInputError: a syntax error (with its line), nesting deeper than Python's
            recursion limit, or any :func:`tree_problems` (all of them, with key paths).
    """
    loader = SpaceLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        problems = tree_problems(loader, root)
        if problems:
            raise SweeperInputError(f"{source}: invalid search space:\n  "
                                    + "\n  ".join(problems))
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise SweeperInputError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise SweeperInputError(f"{source}: nested too deeply to read (a search space nests "
                                "a few levels)") from None
    finally:
        loader.dispose()


def load_space(path: str | Path) -> SearchSpace:
    """Parse and validate ``path`` (or ``env:NAME``: the text of environment variable NAME).

    Raises:
        SweeperInputError: unreadable, too large or non-UTF-8 file, YAML syntax error (with its
            line), duplicate keys or other YAML problems (with key paths), or any validation
            problem (all of them).
    """
    raw = parse_space_text(_read_text(path), str(path))
    # Paths in the file (a checkpoint) are relative to the file; env: text to the cwd.
    root = None if str(path).startswith("env:") else Path(path).resolve().parent
    try:
        return validate_space(raw, root=root)
    except SweeperInputError as exc:
        raise SweeperInputError(f"{path}: {exc}") from None
