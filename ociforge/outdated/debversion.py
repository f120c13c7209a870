"""Debian version ordering (Debian Policy 5.6.12: epoch, upstream, revision; `~` sorts
before anything, even the end of the string), for comparing locked and indexed versions
without dpkg."""

from __future__ import annotations

import functools
import re

_EPOCH = re.compile(r"^(\d+):(.*)$")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit and digit runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(v: str) -> tuple[int, str, str]:
    m = _EPOCH.match(v)
    epoch, rest = (int(m.group(1)), m.group(2)) if m else (0, v)
    upstream, sep, revision = rest.rpartition("-")
    return (epoch, upstream, revision) if sep else (epoch, rest, "")


def compare(a: str, b: str) -> int:
    """<0, 0, >0 as version `a` sorts before, equal to, after `b`."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _part(ua, ub) or _part(ra, rb)


key = functools.cmp_to_key(compare)
