"""Rule conditions as Python: the common CEL subset translated to one generated function per batch.

Calling the CEL program costs ~8 µs a payment, most of it converting values into CEL. The subset
rules are written in (numeric comparisons and arithmetic on doubles, string equality, `&&`, `||`,
`!`, `?:`) is translated at load into one Python function returning every rule's boolean, with the
exact CEL results. A rule outside the subset keeps CEL (see Ruleset._run). The fast path only
answers when it cannot differ from CEL: every value read is present and of its kind, ints exact as
doubles, no NaN (CEL errors on ordering NaN) and strings ASCII (CEL rejects lone surrogates); for
anything else it returns None and CEL decides as before, errors counted as before.
tests/rules/test_pyeval.py checks it against the CEL library on generated expressions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamrisk.rules.expr import _tokens

#: (flat CEL variable, namespace, field, is_numeric), as ruleset.Spec.
Spec = tuple[str, str, str, bool]
#: The generated function: ctx -> one bool per rule, or None when CEL must decide.
FastRules = Callable[[Mapping[str, Mapping[str, Any]]], "tuple[bool, ...] | None"]

_EXACT = 2.0**53  # ints within this are exact as doubles (CEL's double(int) rounds beyond)
_DOUBLE = re.compile(r"^(?:\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)$")

# Expression types, and whether a double may be NaN (an ordering comparison of NaN errors in CEL).
_NUM, _STR, _BOOL = "double", "string", "bool"
_LIT, _NONNAN, _MAYNAN = 0, 1, 2


class Untranslatable(Exception):
    """The condition uses something outside the subset; CEL evaluates it."""


class _Fallback(Exception):
    """Raised by the generated code when CEL must decide this payment."""


def _num(value: Any) -> float:
    """A numeric field as CEL sees it after `double()`: flat_variables passes an integral double
    as an int, so -0.0 arrives as 0 (`+ 0.0` makes it +0.0, and changes nothing else)."""
    if value.__class__ is int and not -_EXACT < value < _EXACT:
        raise _Fallback  # CEL's conversion of a huge int is its own business
    f = float(value)
    if f != f:
        raise _Fallback
    return f + 0.0


def _div(a: float, b: float) -> float:
    """IEEE division, as CEL does it (Python raises on a zero divisor)."""
    if b:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _nn(x: float) -> float:
    """An operand of an ordering comparison: CEL errors on NaN, so let CEL decide."""
    if x != x:
        raise _Fallback
    return x


class _Node:
    __slots__ = ("kind", "nan", "src", "value")

    def __init__(self, src: str, kind: str, nan: int = _NONNAN, value: float | None = None) -> None:
        self.src, self.kind, self.nan, self.value = src, kind, nan, value


class _Parser:
    """Recursive descent over CEL's grammar, precedence lowest first: ?:, ||, &&, relations,
    + -, * / %, unary ! -, then primaries. Anything else raises Untranslatable."""

    def __init__(self, source: str, names: Mapping[str, tuple[str, bool]]) -> None:
        self.toks = [text for kind, text in _tokens(source) if kind not in ("ws", "comment")]
        self.kinds = [kind for kind, _ in _tokens(source) if kind not in ("ws", "comment")]
        self.pos = 0
        self.names = names  # flat variable -> (python local, is_numeric)

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if expected is not None and tok != expected:
            raise Untranslatable(f"expected {expected!r}, got {tok!r}")
        self.pos += 1
        return tok

    def op(self) -> str:
        """The next operator, joining two-character ones (the tokenizer splits punctuation)."""
        a, b = self.peek(), self.peek(1)
        if a + b in ("&&", "||", "<=", ">=", "==", "!="):
            return a + b
        return a

    def parse(self) -> _Node:
        node = self.ternary()
        if self.pos != len(self.toks):
            raise Untranslatable(f"unexpected {self.peek()!r}")
        if node.kind != _BOOL:
            raise Untranslatable("not a bool")
        return node

    def ternary(self) -> _Node:
        cond = self.logical("||")
        if self.peek() != "?":
            return cond
        self.take()
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        if cond.kind != _BOOL or yes.kind != no.kind:
            raise Untranslatable("?: needs a bool condition and branches of one type")
        nan = max(yes.nan, no.nan, _NONNAN)
        return _Node(f"({yes.src} if {cond.src} else {no.src})", yes.kind, nan)

    def logical(self, symbol: str) -> _Node:
        sub = (lambda: self.logical("&&")) if symbol == "||" else self.relation
        left = sub()
        while self.op() == symbol:
            self.pos += 2
            right = sub()
            if left.kind != _BOOL or right.kind != _BOOL:
                raise Untranslatable(f"{symbol} needs bools")
            word = "or" if symbol == "||" else "and"
            left = _Node(f"({left.src} {word} {right.src})", _BOOL)
        return left

    def relation(self) -> _Node:
        left = self.additive()
        while (sym := self.op()) in ("<", "<=", ">", ">=", "==", "!="):
            self.pos += len(sym)
            right = self.additive()
            if left.kind != right.kind:
                raise Untranslatable("comparison of two types")
            if sym in ("==", "!="):  # IEEE equality in both, NaN included
                left = _Node(f"({left.src} {sym} {right.src})", _BOOL)
                continue
            if left.kind != _NUM:
                raise Untranslatable("ordering of non-numbers")
            a, b = (f"_nn({n.src})" if n.nan == _MAYNAN else n.src for n in (left, right))
            left = _Node(f"({a} {sym} {b})", _BOOL)
        return left

    def additive(self) -> _Node:
        left = self.multiplicative()
        while (sym := self.op()) in ("+", "-"):
            self.pos += 1
            right = self.multiplicative()
            self._numbers(left, right)
            # inf - inf is the only NaN from non-NaN operands: a finite literal side rules it out.
            nan = _NONNAN if _LIT in (left.nan, right.nan) and _MAYNAN not in (left.nan, right.nan) \
                else _MAYNAN
            left = _Node(f"({left.src} {sym} {right.src})", _NUM, nan)
        return left

    def multiplicative(self) -> _Node:
        left = self.unary()
        while (sym := self.op()) in ("*", "/", "%"):
            if sym == "%":
                raise Untranslatable("% is not defined on doubles")
            self.pos += 1
            right = self.unary()
            self._numbers(left, right)
            nonzero_lit = right.nan == _LIT and right.value != 0.0
            if sym == "*":
                nonzero_lit = nonzero_lit or (left.nan == _LIT and left.value != 0.0)
                src = f"({left.src} * {right.src})"
            else:
                src = f"_div({left.src}, {right.src})"
            # inf * 0, 0 / 0 and inf / inf make NaN: a nonzero literal factor or divisor rules them out.
            ok = nonzero_lit and _MAYNAN not in (left.nan, right.nan)
            left = _Node(src, _NUM, _NONNAN if ok else _MAYNAN)
        return left

    def unary(self) -> _Node:
        tok = self.peek()
        if tok == "!" and self.op() != "!=":
            self.take()
            inner = self.unary()
            if inner.kind != _BOOL:
                raise Untranslatable("! needs a bool")
            return _Node(f"(not {inner.src})", _BOOL)
        if tok == "-":
            self.take()
            inner = self.unary()
            if inner.kind != _NUM:
                raise Untranslatable("- needs a double")
            value = -inner.value if inner.value is not None else None
            return _Node(f"(-{inner.src})", _NUM, inner.nan, value)
        return self.primary()

    def primary(self) -> _Node:
        kind, tok = self.kinds[self.pos] if self.pos < len(self.kinds) else "", self.take()
        if tok == "(":
            node = self.ternary()
            self.take(")")
            return node
        if kind == "number":
            if not _DOUBLE.match(tok) or not math.isfinite(float(tok)):
                raise Untranslatable(f"literal {tok} is not a double")  # ints mix with doubles
            return _Node(repr(float(tok)), _NUM, _LIT, float(tok))
        if kind == "string":
            body = tok[1:-1]
            if tok[0] not in "'\"" or tok[:3] in ("'''", '"""') or "\\" in body:
                raise Untranslatable("only plain string literals")
            return _Node(repr(body), _STR)
        if kind != "ident" or self.peek() in (".", "["):
            raise Untranslatable(f"unsupported {tok!r}")
        if tok in ("true", "false"):
            return _Node(str(tok == "true"), _BOOL)
        if tok == "double" and self.peek() == "(":
            self.take()
            inner = self.ternary()
            self.take(")")
            if inner.kind != _NUM:
                raise Untranslatable("double() of a non-double")
            return inner
        if tok in self.names and self.peek() != "(":
            local, numeric = self.names[tok]
            if numeric:  # read as double() of it: prepare() wraps every numeric field
                return _Node(local, _NUM)
            return _Node(local, _STR)
        raise Untranslatable(f"unsupported {tok!r}")

    @staticmethod
    def _numbers(left: _Node, right: _Node) -> None:
        if left.kind != _NUM or right.kind != _NUM:
            raise Untranslatable("arithmetic needs doubles")


def translate(cel_source: str, names: Mapping[str, tuple[str, bool]]) -> str:
    """A prepared condition (expr.prepare) as a Python expression over the locals in `names`;
    raises Untranslatable outside the subset."""
    parser = _Parser(cel_source, names)
    # A numeric field outside double() would reach CEL as an int or a double: not translated.
    for i, tok in enumerate(parser.toks):
        if tok in names and names[tok][1] and (i < 2 or parser.toks[i - 2 : i] != ["double", "("]
                                               or parser.toks[i + 1 : i + 2] != [")"]):
            raise Untranslatable(f"{tok} outside double()")
    return parser.parse().src


def compile_rules(sources: Sequence[str], specs: Sequence[Spec]) -> FastRules:
    """One function evaluating every condition of `sources` (prepared CEL) over the fields in
    `specs`; raises Untranslatable when one of them is outside the subset."""
    names = {sp[0]: (f"v{i}", sp[3]) for i, sp in enumerate(specs)}
    exprs = [translate(s, names) for s in sources]
    lines = ["def fast_rules(ctx):", "    try:"]
    by_ns: dict[str, list[tuple[int, Spec]]] = {}
    for i, sp in enumerate(specs):
        by_ns.setdefault(sp[1], []).append((i, sp))
    for ns, fields in by_ns.items():
        lines.append(f"        ns = ctx[{ns!r}]")
        for i, (_, _, field, numeric) in fields:
            v = f"v{i}"
            lines.append(f"        {v} = ns[{field!r}]")
            if numeric:
                lines += [
                    f"        if {v}.__class__ is float:",
                    f"            if {v} != {v}: return None",
                    f"            {v} += 0.0",
                    f"        elif {v}.__class__ is int and -{_EXACT!r} < {v} < {_EXACT!r}:",
                    f"            {v} = float({v})",
                    "        else:",
                    f"            {v} = _num({v})",
                ]
            else:
                lines.append(f"        if {v}.__class__ is not str or not {v}.isascii(): return None")
    lines.append(f"        return ({''.join(e + ', ' for e in exprs)})")
    lines += ["    except Exception:", "        return None"]
    scope: dict[str, Any] = {"_num": _num, "_div": _div, "_nn": _nn}
    # Only locals, operators and literals the parser produced go into the source.
    exec(compile("\n".join(lines), "<streamrisk rules>", "exec"), scope)
    return scope["fast_rules"]
