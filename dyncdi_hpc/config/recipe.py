"""Recipes of projection algorithms, e.g. "3*(20*ER+180*HIO)+20*ER", parsed and validated.

Steps: ER (error reduction), HIO (hybrid input-output, ReconParams.hio_beta) and RAAR (relaxed
averaged alternating reflections, ReconParams.raar_beta); names are case-insensitive.
"""

from __future__ import annotations

import re

ALGORITHMS = ("ER", "HIO", "RAAR")

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z]+)|(.))")


def parse_recipe(text: str) -> tuple[tuple[str, int], ...]:
    """Expand a recipe into (algorithm, iterations) blocks; ValueError says what is wrong."""
    tokens = [m.groups() for m in _TOKEN.finditer(text) if m.group(0).strip()]
    if not tokens and text.strip():
        raise ValueError(f"recipe {text!r} is not understood")
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else (None, None, None)

    def fail(what: str):
        raise ValueError(
            f"recipe {text!r}: {what}; write e.g. '3*(20*ER+180*HIO)+20*ER' with steps "
            f"{', '.join(ALGORITHMS)}"
        )

    def expr() -> list[tuple[str, int]]:
        nonlocal pos
        blocks = term()
        while peek()[2] == "+":
            pos += 1
            blocks += term()
        return blocks

    def term() -> list[tuple[str, int]]:
        nonlocal pos
        count, name, sym = peek()
        repeat = 1
        if count is not None:
            repeat = int(count)
            if repeat < 1:
                fail(f"count {repeat} must be at least 1")
            pos += 1
            if peek()[2] in (".", ","):
                fail(f"count {count}{peek()[2]}... must be a whole number")
            if peek()[2] != "*":
                fail(f"expected '*' after {count}")
            pos += 1
            after, name, sym = peek()
            if name is None and sym != "(":
                found = "the end" if after is None and sym is None else repr(after or sym)
                fail(f"expected a step or '(' after '{count}*', found {found}")
        if name is not None:
            if name.upper() not in ALGORITHMS:
                fail(f"unknown step {name!r}")
            pos += 1
            return [(name.upper(), repeat)]
        if sym == "(":
            pos += 1
            inner = expr()
            if peek()[2] != ")":
                fail("missing ')'")
            pos += 1
            return inner * repeat
        fail("expected a count, a step or '('" if sym is None else f"unexpected {sym!r}")
        return []

    if not text.strip():
        return ()
    blocks = expr()
    if pos != len(tokens):
        fail(f"unexpected {''.join(t for t in tokens[pos] if t)!r}")
    merged: list[tuple[str, int]] = []
    for name, n in blocks:
        if merged and merged[-1][0] == name:
            merged[-1] = (name, merged[-1][1] + n)
        else:
            merged.append((name, n))
    return tuple(merged)
