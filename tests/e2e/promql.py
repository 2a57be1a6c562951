"""A small PromQL parser, enough to lint Grafana dashboard queries without Prometheus.

It builds a tree of the expression (selectors, range selectors, function calls,
aggregations, binary operations) so the lint can ask the questions grafana/dashboard-linter
asks: which selectors lack a matcher, which counters are not inside rate/increase, which
range selectors do not use $__rate_interval. Grafana variables ($job, ${job},
$__rate_interval, $__range) are accepted where Grafana would substitute them.

It is not a full PromQL implementation: the e2e proof sends every query to a real
Prometheus, which is the final judge of validity.
"""

import re

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
AGGREGATIONS_WITH_PARAM = {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}

BINARY_OPS = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or",
              "unless", "atan2"}
COMPARISON_OPS = {"==", "!=", ">", "<", ">=", "<="}

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]*\.)?[0-9]+(?:[eE][+-]?[0-9]+)?|(?:[Ii]nf|NaN)(?![A-Za-z0-9_:]))
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)


class PromQLError(ValueError):
    pass


class Node:
    children = ()

    def walk(self, parents=()):
        """Yield (node, parents) for this node and every node below it."""
        yield self, parents
        for child in self.children:
            yield from child.walk(parents + (self,))


class Matcher:
    def __init__(self, name, op, value):
        self.name, self.op, self.value = name, op, value

    def __repr__(self):
        return f"{self.name}{self.op}{self.value!r}"


class VectorSelector(Node):
    def __init__(self, name, matchers):
        self.name, self.matchers = name, matchers

    def matcher(self, label):
        return [m for m in self.matchers if m.name == label]

    def __repr__(self):
        return f"{self.name or ''}{{{', '.join(map(repr, self.matchers))}}}"


class MatrixSelector(Node):
    def __init__(self, vector, range_):
        self.vector, self.range = vector, range_
        self.children = (vector,)


class Subquery(Node):
    def __init__(self, expr, range_, step):
        self.expr, self.range, self.step = expr, range_, step
        self.children = (expr,)


class Call(Node):
    def __init__(self, func, args):
        self.func, self.args = func, args
        self.children = tuple(args)


class Aggregation(Node):
    def __init__(self, op, expr, param, grouping, without):
        self.op, self.expr, self.param, self.grouping, self.without = op, expr, param, grouping, without
        self.children = tuple(x for x in (param, expr) if x is not None)


class Binary(Node):
    def __init__(self, op, lhs, rhs, matching):
        self.op, self.lhs, self.rhs, self.matching = op, lhs, rhs, matching
        self.children = (lhs, rhs)


class Unary(Node):
    def __init__(self, op, expr):
        self.op, self.expr = op, expr
        self.children = (expr,)


class Paren(Node):
    def __init__(self, expr):
        self.expr = expr
        self.children = (expr,)


class Literal(Node):
    def __init__(self, kind, value):
        self.kind, self.value = kind, value


def tokenize(text):
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise PromQLError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            tokens.append((kind, m.group(), pos))
        pos = m.end()
    tokens.append(("eof", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # token helpers
    def peek(self, k=0):
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, value):
        if self.peek()[1] == value and self.peek()[0] in ("op", "ident"):
            return self.next()
        return None

    def expect(self, value):
        tok = self.next()
        if tok[1] != value:
            raise PromQLError(f"expected {value!r} at offset {tok[2]}, found {tok[1] or 'end of query'!r}")
        return tok

    # grammar
    def parse(self):
        expr = self.expr()
        tok = self.peek()
        if tok[0] != "eof":
            raise PromQLError(f"unexpected {tok[1]!r} at offset {tok[2]}")
        return expr

    def expr(self):
        lhs = self.unary()
        while True:
            kind, value, _ = self.peek()
            if not ((kind == "op" and value in BINARY_OPS) or (kind == "ident" and value in BINARY_OPS)):
                return lhs
            self.next()
            matching = {}
            if value in COMPARISON_OPS and self.accept("bool"):
                matching["bool"] = True
            for kw in ("on", "ignoring"):
                if self.accept(kw):
                    matching[kw] = self.label_list()
            for kw in ("group_left", "group_right"):
                if self.accept(kw):
                    matching[kw] = self.label_list() if self.peek()[1] == "(" else []
            rhs = self.unary()
            lhs = Binary(value, lhs, rhs, matching)

    def unary(self):
        if self.peek()[1] in ("-", "+") and self.peek()[0] == "op":
            op = self.next()[1]
            return Unary(op, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node):
        while True:
            if self.peek()[1] == "[":
                self.next()
                range_ = self.duration()
                if self.accept(":"):
                    step = None if self.peek()[1] == "]" else self.duration()
                    self.expect("]")
                    node = Subquery(node, range_, step)
                else:
                    self.expect("]")
                    if not isinstance(node, VectorSelector):
                        raise PromQLError("a range [..] can only follow a vector selector (use a subquery [range:step])")
                    node = MatrixSelector(node, range_)
            elif self.peek()[1] == "offset":
                self.next()
                if self.peek()[1] == "-":
                    self.next()
                self.duration()
            elif self.peek()[1] == "@":
                self.next()
                tok = self.next()
                if tok[0] == "ident" and tok[1] in ("start", "end"):
                    self.expect("(")
                    self.expect(")")
                elif tok[0] != "number":
                    raise PromQLError(f"bad @ modifier at offset {tok[2]}")
            else:
                return node

    def duration(self):
        kind, value, pos = self.next()
        if kind in ("duration", "var"):
            return value
        raise PromQLError(f"expected a duration at offset {pos}, found {value!r}")

    def label_list(self):
        self.expect("(")
        labels = []
        while self.peek()[1] != ")":
            kind, value, pos = self.next()
            if kind != "ident":
                raise PromQLError(f"expected a label name at offset {pos}, found {value!r}")
            labels.append(value)
            if not self.accept(","):
                break
        self.expect(")")
        return labels

    def primary(self):
        kind, value, pos = self.peek()
        if kind == "number":
            self.next()
            return Literal("number", value)
        if kind == "string":
            self.next()
            return Literal("string", value)
        if value == "(" and kind == "op":
            self.next()
            inner = self.expr()
            self.expect(")")
            return Paren(inner)
        if value == "{" and kind == "op":
            return VectorSelector(None, self.matchers())
        if kind == "ident":
            if value in AGGREGATIONS and self.peek(1)[1] in ("(", "by", "without"):
                return self.aggregation()
            if self.peek(1)[1] == "(":
                if value not in FUNCTIONS:
                    raise PromQLError(f"unknown function {value!r} at offset {pos}")
                self.next()
                self.expect("(")
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if not self.accept(","):
                        break
                self.expect(")")
                return Call(value, args)
            if value in BINARY_OPS or value in ("by", "without", "on", "ignoring", "bool", "offset"):
                raise PromQLError(f"unexpected keyword {value!r} at offset {pos}")
            self.next()
            matchers = self.matchers() if self.peek()[1] == "{" else []
            return VectorSelector(value, matchers)
        raise PromQLError(f"unexpected {value or 'end of query'!r} at offset {pos}")

    def aggregation(self):
        op = self.next()[1]
        grouping, without = None, False
        if self.peek()[1] in ("by", "without"):
            without = self.next()[1] == "without"
            grouping = self.label_list()
        self.expect("(")
        param = None
        if op in AGGREGATIONS_WITH_PARAM:
            param = self.expr()
            self.expect(",")
        expr = self.expr()
        self.expect(")")
        if self.peek()[1] in ("by", "without"):
            if grouping is not None:
                raise PromQLError("aggregation has two grouping clauses")
            without = self.next()[1] == "without"
            grouping = self.label_list()
        return Aggregation(op, expr, param, grouping or [], without)

    def matchers(self):
        self.expect("{")
        out = []
        while self.peek()[1] != "}":
            kind, name, pos = self.next()
            if kind not in ("ident", "string"):
                raise PromQLError(f"expected a label name at offset {pos}, found {name!r}")
            op = self.next()[1]
            if op not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"expected a matcher operator after {name!r}, found {op!r}")
            kind, value, pos = self.next()
            if kind != "string":
                raise PromQLError(f"expected a quoted value for {name!r} at offset {pos}")
            out.append(Matcher(name, op, _unquote(value)))
            if not self.accept(","):
                break
        self.expect("}")
        return out


def _unquote(s):
    if s[0] == "`":
        return s[1:-1]
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def parse(text):
    """Parse a PromQL expression (Grafana variables allowed) into a Node tree."""
    if not text or not text.strip():
        raise PromQLError("empty query")
    return _Parser(text).parse()


def selectors(tree):
    """Yield (VectorSelector, parents) for every selector in the tree."""
    for node, parents in tree.walk():
        if isinstance(node, VectorSelector):
            yield node, parents


def parse_label_values(query):
    """Split Grafana's `label_values(selector, label)` into (selector or None, label)."""
    m = re.fullmatch(r"\s*label_values\(\s*(.*?)\s*(?:,\s*([A-Za-z_][A-Za-z0-9_]*)\s*)?\)\s*", query, re.S)
    if not m:
        raise PromQLError(f"not a label_values() query: {query!r}")
    selector, label = m.group(1), m.group(2)
    if label is None:  # label_values(label)
        return None, selector
    return selector, label
