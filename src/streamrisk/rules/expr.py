"""Prepare rule conditions for CEL: inline params, flatten field references, check names."""

# `user.payment_count_5m` becomes `double(user__payment_count_5m)`: the binding converts a
# top-level variable about twice as fast as a field of a nested map.

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import cel

from streamrisk.rules.schema import CONTEXT_SCHEMA, NUM

PARAMS = "params"
ROOTS = frozenset(CONTEXT_SCHEMA)
SEPARATOR = "__"

#: Named CEL functions the Rust interpreter implements natively; anything else would
#: only fail at evaluation, so it is rejected at load.
ALLOWED_FUNCTIONS = frozenset(
    {"size", "int", "uint", "double", "string", "contains", "startsWith", "endsWith",
     "matches", "dyn"}
)
_MACROS = ("all", "exists", "exists_one", "map", "filter")

# One alternative per CEL lexical class that matters for rewriting; strings (raw ones
# have no escapes) and comments are matched whole so nothing inside them is rewritten.
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<raw>(?:[rR][bB]?|[bB][rR])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*"))
  | (?P<string>[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
               |'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_FLAT_NAME = re.compile(r"\b(" + "|".join(sorted(ROOTS)) + r")__([A-Za-z0-9_]+)")


class ExpressionError(ValueError):
    """A condition that cannot be used; the message says why (without the rule name)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A condition rewritten for CEL, with the context fields it reads."""

    cel_source: str
    fields: tuple[tuple[str, str], ...]  # (namespace, field) in first-use order


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:  # pragma: no cover - the `punct` branch matches any character
            raise ExpressionError(f"cannot tokenize at offset {pos}")
        kind = m.lastgroup or "punct"
        if kind == "punct" and m.group() in "'\"":
            raise ExpressionError(f"unterminated string literal at offset {pos}")
        out.append((kind, m.group()))
        pos = m.end()
    return out


def cel_literal(value: object) -> str:
    """Render a param value as a CEL literal; numbers always become doubles."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        f = float(value)
        if not math.isfinite(f):
            raise ExpressionError(f"param value {value!r} is not finite")
        return repr(f)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    raise ExpressionError(
        f"param value {value!r} must be a number, string, bool or a list of those"
    )


def prepare(source: str, params: Mapping[str, str]) -> Prepared:
    """Rewrite ``source``: ``params.x`` -> literal, ``ns.field`` -> flat variable.

    ``params`` maps each param name to its already-rendered CEL literal.
    """
    toks = _tokens(source)
    sig = [i for i, (kind, _) in enumerate(toks) if kind not in ("ws", "comment")]
    out = [text for _, text in toks]
    fields: dict[tuple[str, str], None] = {}
    for n, i in enumerate(sig):
        kind, text = toks[i]
        if kind != "ident":
            continue
        prev = toks[sig[n - 1]][1] if n > 0 else ""
        if prev == ".":
            continue  # a field of something else, e.g. `x.user`
        nxt = toks[sig[n + 1]][1] if n + 1 < len(sig) else ""
        if text == "has" and nxt == "(":
            raise ExpressionError(
                "has() is not supported: every schema field is always present "
                "(a missing one makes the rule error and is counted)"
            )
        if text not in ROOTS and text != PARAMS:
            continue
        if nxt != "." or n + 2 >= len(sig) or toks[sig[n + 2]][0] != "ident":
            raise ExpressionError(f"'{text}' must be followed by .field_name")
        j = sig[n + 2]
        field = toks[j][1]
        if text == PARAMS:
            if field not in params:
                raise ExpressionError(f"unknown param 'params.{field}'")
            replacement = params[field]
        else:
            if field not in CONTEXT_SCHEMA[text]:
                raise ExpressionError(f"unknown field '{text}.{field}'")
            fields[(text, field)] = None
            replacement = f"{text}{SEPARATOR}{field}"
            if CONTEXT_SCHEMA[text][field] == NUM:
                # Numbers may arrive as ints (cheaper to convert); double() keeps the
                # documented contract that every numeric field is a double.
                replacement = f"double({replacement})"
        out[i] = replacement
        for k in range(i + 1, j + 1):  # drop the dot, the field and any blanks between
            out[k] = ""
    return Prepared("".join(out), tuple(fields))


def compile_checked(prepared: Prepared, source: str) -> cel.Program:
    """Compile a prepared condition and check the names it uses."""
    try:
        program = cel.compile(prepared.cel_source)
    except Exception as exc:  # the binding raises ValueError with a caret diagram
        raise ExpressionError(f"does not compile: {exc}") from None
    flat = {f"{ns}{SEPARATOR}{f}" for ns, f in prepared.fields}
    bound = set(
        re.findall(r"\.\s*(?:" + "|".join(_MACROS) + r")\s*\(\s*([A-Za-z_]\w*)\s*,", source)
    )
    for name in program.variables():
        if name not in flat and name not in bound:
            raise ExpressionError(
                f"unknown identifier '{name}' (use payment.*, user.*, merchant.* or params.*)"
            )
    for name in program.functions():
        if name[0].isalpha() and name not in ALLOWED_FUNCTIONS:
            raise ExpressionError(f"unknown function '{name}'")
    return program


def readable_error(exc: BaseException) -> str:
    """Turn a CEL evaluation error into text that uses the rule's own field names."""
    text = str(exc).split(". Check that", 1)[0]
    text = text.replace("Undefined variable or function", "missing or invalid value")
    return f"{type(exc).__name__}: " + _FLAT_NAME.sub(r"\1.\2", text)
