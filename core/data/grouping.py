"""Which files belong together (the same speaker, subject, session or recording site), read from
their names with a regular expression: validation and test then hold out whole groups, so that
they measure what a new speaker or subject will see (see split.assign_groups).

A pattern is searched (``re.search``) in each file's path below its class folder, with ``/``
between folders: ``0_george_12.wav``, or ``subject03/take2.png``. Its first capture group is the
group: ``_([a-z]+)_`` reads ``george`` from ``0_george_12.wav``.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from ..config import NO_GROUPS, pattern_problem
from ..errors import DataError


def effective_pattern(own: str, shared: str) -> str:
    """A modality's own pattern wins over the shared one; 'none' means no grouping ('' returned)."""
    pattern = own or shared
    return "" if pattern == NO_GROUPS else pattern


def name_below_class(relative_path: str) -> str:
    """``0/0_george_12.wav`` -> ``0_george_12.wav``: the part of the path a group pattern reads."""
    parts = PurePath(relative_path).parts
    return "/".join(parts[1:] if len(parts) > 1 else parts)


def file_groups(files: list[str], pattern: str, modality: str, limit: int = 5) -> list[str]:
    """The group of each file (paths relative to the modality folder); every file must match.

    Raises DataError naming the files the pattern does not match and what to do."""
    problem = pattern_problem(pattern)
    if problem:
        raise DataError(problem)
    compiled = re.compile(pattern)
    groups, unmatched = [], []
    for f in files:
        match = compiled.search(name_below_class(f))
        group = match.group(1) if match else None
        if not group:  # no match, an optional group that took no part, or an empty one
            unmatched.append(f)
        groups.append(group or "")
    if unmatched:
        shown = ", ".join(unmatched[:limit]) + (f" and {len(unmatched) - limit} more" if len(unmatched) > limit else "")
        raise DataError(
            f"The group pattern '{pattern}' finds no group in {len(unmatched)} of {len(files)} file(s) of the modality "
            f"'{modality}': {shown}. The pattern is searched in each file's path below its class folder and its first "
            f"capture group (in parentheses) must match at least one character. Change the pattern so that it "
            f"matches every file name, rename or remove those files, or give the modality '{modality}' its own "
            f"pattern (':group=REGEX' after its folder), or ':group={NO_GROUPS}' to split it by class only."
        )
    return groups


def describe_groups(names: list[str], limit: int = 8) -> str:
    """'george, jackson' or 'a, b, c, ... (40 groups)'."""
    if len(names) <= limit:
        return ", ".join(names) if names else "none"
    return ", ".join(names[:limit]) + f", ... ({len(names)} groups)"
