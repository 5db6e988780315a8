"""Just enough PromQL structure for scripts/observability/evaluate.py (stdlib only):

- `operands(expr)`: what must return data for `expr` to be sound. An expression with a
  top-level comparison (`x > 0.01`) or set operation (`a and b`, `a or b`) is legitimately
  empty while the system is healthy, so its sides are checked instead, recursively, in
  PromQL's precedence (`or` < `and`/`unless` < comparisons); number literals are dropped.
  Anything else is its own single operand.
- `selectors(expr)`: the vector selectors it reads (`name{matchers}`), to name the one that
  has no series when a query is empty.
"""
import re

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,(){}\[\]@])
""", re.X)

OPEN, CLOSE = "([{", ")]}"
COMPARISONS = {"==", "!=", ">=", "<=", ">", "<"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


def tokens(expr):
    """(kind, text, start, end) of every token but whitespace."""
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def _closing(toks, i):
    """The index of the bracket that closes toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j][1] in OPEN:
            depth += 1
        elif toks[j][1] in CLOSE:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def _split_top(expr, is_operator):
    """expr cut at every depth-0 token for which is_operator(kind, text) holds."""
    parts, depth, start = [], 0, 0
    for kind, text, a, b in tokens(expr):
        if text in OPEN:
            depth += 1
        elif text in CLOSE:
            depth -= 1
        elif depth == 0 and is_operator(kind, text):
            parts.append(expr[start:a])
            start = b
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def unwrap(expr):
    """expr without parentheses around all of it."""
    expr = expr.strip()
    while True:
        toks = tokens(expr)
        if toks and toks[0][1] == "(" and _closing(toks, 0) == len(toks) - 1:
            expr = expr[1:-1].strip()
        else:
            return expr


def _drop_modifiers(expr):
    """A binary operator's right side without its `bool`, `on (...)`, `group_left (...)`."""
    toks = tokens(expr)
    i = 0
    while i < len(toks) and toks[i][1] in LABEL_LISTS | {"bool"}:
        i += 1
        if i < len(toks) and toks[i][1] == "(":
            i = _closing(toks, i) + 1
    return expr[toks[i][2]:] if i < len(toks) else ""


def _is_number(expr):
    return all(kind == "num" or text in "+-*/%^()" for kind, text, _, _ in tokens(expr))


def operands(expr):
    """The sub-expressions that must each return data (see the module's doc)."""
    expr = unwrap(expr)
    for ops in ({"or"}, {"and", "unless"}):
        parts = _split_top(expr, lambda kind, text: kind == "ident" and text.lower() in ops)
        if len(parts) > 1:
            return [o for p in parts for o in operands(_drop_modifiers(p))]
    parts = _split_top(expr, lambda kind, text: kind == "op" and text in COMPARISONS)
    if len(parts) > 1:
        sides = [parts[0]] + [_drop_modifiers(p) for p in parts[1:]]
        return [o for p in sides if not _is_number(p) for o in operands(p)]
    return [expr]


def selectors(expr):
    """Every vector selector in expr, as text (`name{matchers}` or `{matchers}`)."""
    toks = tokens(expr)
    found, i = [], 0
    while i < len(toks):
        kind, text, a, b = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in LABEL_LISTS and following == "(":
            i = _closing(toks, i + 1) + 1
            continue
        is_name = (kind == "ident" and following != "(" and text not in AGGREGATIONS
                   and text.lower() not in KEYWORDS and text not in LABEL_LISTS)
        if is_name or text == "{":
            start = i
            if is_name and following == "{":
                i += 1
            if toks[i][1] == "{":
                i = _closing(toks, i)
            found.append(expr[toks[start][2]:toks[i][3]])
        i += 1
    return found
