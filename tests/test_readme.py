"""The README renders as written: every table keeps its header's cells in each row and ends
where it should (a line after a table that is not blank becomes one more row on GitHub), and
the schema version it names is the one the files hold."""

from __future__ import annotations

import re
from pathlib import Path

from sweeper.schema import SCHEMA_VERSION

README = Path(__file__).resolve().parent.parent / "README.md"
DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
#: The markers around the tables the schema writes (sweeper.schema.write_readme): an HTML
#: block, which ends a table as a blank line does.
MARKER = re.compile(r"^<!-- /?schema:\w+ -->$")


def _cells(row: str) -> int:
    """The cells of a table row: split at every | that is not escaped as \\|."""
    inner = row.strip().removeprefix("|").removesuffix("|")
    return len(re.split(r"(?<!\\)\|", inner))


def _tables(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line indices of each table outside code blocks, header included."""
    tables, fenced, i = [], False, 0
    while i < len(lines):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif (not fenced and lines[i].startswith("|") and i + 1 < len(lines)
              and DELIMITER.match(lines[i + 1])):
            end = i + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            tables.append((i, end))
            i = end
            continue
        i += 1
    return tables


def test_every_table_keeps_its_header_cells_and_stands_between_blank_lines():
    lines = README.read_text().splitlines()
    tables = _tables(lines)
    assert len(tables) >= 12
    problems = []
    for first, end in tables:
        header = _cells(lines[first])
        for number in range(first + 1, end):
            if _cells(lines[number]) != header:
                problems.append(f"README.md:{number + 1}: {_cells(lines[number])} cells, the "
                                f"header has {header}: {lines[number][:60]}")
        before = lines[first - 1] if first else ""
        after = lines[end] if end < len(lines) else ""
        if before.strip() and not MARKER.match(before):
            problems.append(f"README.md:{first + 1}: no blank line before the table")
        if after.strip() and not MARKER.match(after):
            problems.append(f"README.md:{end + 1}: no blank line after the table, so "
                            f"{after[:40]!r} renders as one of its rows")
    assert not problems, "\n".join(problems)


def test_the_schema_version_named_is_the_one_written():
    named = re.findall(r"sweeper\.schema_version` \(now `(\d+)`", README.read_text())
    assert named == [SCHEMA_VERSION]
