"""User SQL, parsed and checked before any engine sees it.

A query is parsed with sqlglot in the engine's dialect. It must be one SELECT (or a set operation
of SELECTs) whose every table is ``events`` or a CTE it defines itself; every function must be on
the allow-list (pure functions over values: no table functions, no file, network, system,
settings or variable access); no SETTINGS, FORMAT or INTO clause, no named parameters. What runs
is the checked tree rendered again by sqlglot — never the user's text — so comments and unparsed
tails cannot reach the engine, and limits appended by the engine cannot be cut off.

``?`` placeholders are bound by the engine's own mechanism (``bind``), in the order they appear in
the text; an engine that cannot bind (R2 SQL's HTTP API) inlines them as literals rendered by the
same printer, which escapes them for its dialect.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import OptimizeError, ParseError, TokenError
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.tokenizer_core import TokenType

from lakebench.engines.base import QueryError, SqlLimits

TABLE: Final = "events"
# sqlglot logs a warning when it falls back to an opaque command; such statements are refused here.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def _words(text: str) -> list[str]:
    return text.split()


# Node kinds a SELECT over one table needs; anything else (INTO, SET, PRAGMA, COPY, variables,
# session parameters, commands sqlglot could not parse) is refused.
_NODES: Final[tuple[type[exp.Expr], ...]] = tuple(
    getattr(exp, name)
    for name in _words(
        """
        Select Union Intersect Except Subquery With CTE TableAlias From Join Where Group Having Qualify
        Order Ordered Limit Offset Fetch Distinct Window WindowSpec Column Identifier Literal Star Null
        Boolean Placeholder Alias Aliases Paren Tuple Array Struct PropertyEQ Bracket Dot Slice Lambda Var
        DataType DataTypeParam Interval IntervalSpan Unary Binary Exists Any All Between In HexString
        BitString ByteString UnicodeString RawString Table Lateral Final Kwarg JSONPath JSONPathRoot
        JSONPathKey JSONPathSubscript JSONPathWildcard JSONPathSlice Cube Rollup GroupingSets Filter
        WithinGroup IgnoreNulls RespectNulls HavingMax Values
        """
    )
    if isinstance(getattr(exp, name, None), type)
)

_FUNCTION_CLASSES: Final = frozenset(
    name.lower()
    for name in _words(
        """
        Count CountIf Sum SumIf Avg Min Max ArgMax ArgMin AnyValue First Last ApproxDistinct Median Quantile
        Quantiles ApproxQuantile PercentileCont PercentileDisc Stddev StddevPop StddevSamp Variance
        VariancePop GroupConcat ArrayAgg ArrayUniqueAgg LogicalAnd LogicalOr Corr CovarPop CovarSamp Mode

        RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue NthValue

        Lower Upper Length Substring Concat ConcatWs Trim Replace StrPosition Left Right Reverse Initcap
        RegexpLike RegexpILike RegexpExtract RegexpExtractAll RegexpReplace RegexpSplit RegexpCount Split
        StartsWith EndsWith Contains MD5 SHA SHA2 Ascii Chr Unicode Hex Unhex LowerHex SplitPart
        Translate Soundex ToBase64 FromBase64 Format

        TimeToStr StrToTime StrToDate TimeStrToTime TimeStrToDate TimestampTrunc DateTrunc TimeTrunc Extract
        DateDiff TimestampDiff DatetimeDiff DateAdd DateSub TimestampAdd TimestampSub DatetimeAdd DatetimeSub
        CurrentTimestamp CurrentDate CurrentDatetime UnixToTime UnixToStr TimeToUnix Date Year Quarter Month
        Week WeekOfYear Day DayOfWeek DayOfWeekIso DayOfMonth DayOfYear Hour Minute Second LastDay ToDays
        TsOrDsToDate TsOrDsAdd TsOrDsDiff TsOrDsToTimestamp DateFromParts TimestampFromParts EpochMs ToNumber

        Exists Any All Case If Coalesce Nullif Greatest Least Cast TryCast Abs Round Floor Ceil Sqrt Cbrt
        Ln Log Log2 Log10 Exp Pow Sign Trunc Pi Div SafeDivide Mod IsNan IsInf Bin

        JSONExtract JSONExtractScalar JSONExtractArray JSONBExtract JSONBExtractScalar JSONArrayLength
        JSONFormat JSONKeys JSONType ParseJSON IsJson JSONValueArray

        Array ArraySize ArrayContains ArrayContainsAll ArrayOverlaps ArrayFilter ArrayFirst ArrayLast
        ArrayToString ArraySort ArrayReverse ArrayDistinct ArraySlice ArrayConcat ArrayJoin ArraySum ArrayMax
        ArrayMin Transform Struct StructExtract Explode Unnest Posexplode Map MapFromEntries VarMap ToArray
        ToMap Flatten
        """
    )
)
"""Pure functions, by sqlglot's dialect-independent expression class: aggregates, windows, text,
time, values, JSON (attributes are a JSON object stored as text), arrays. Nothing that builds a
value of a size the query chooses (repeat, pad, range), reads outside the row, or sleeps."""


@dataclass(frozen=True, slots=True)
class SqlDialect:
    """One engine's SQL: the sqlglot dialect it is parsed and rendered in, and the extra function
    names (functions sqlglot does not model, kept as written) it allows."""

    sqlglot: str
    functions: frozenset[str]


def _names(text: str) -> frozenset[str]:
    return frozenset(name.lower() for name in _words(text))


DUCKDB: Final = SqlDialect(
    "duckdb",
    _names(
        "epoch epoch_us epoch_ms epoch_ns make_timestamp make_date now today len strlen length_grapheme "
        "regexp_full_match list_contains list_has_any list_has_all list_sort list_reverse list_distinct "
        "list_aggregate list_transform list_filter list_value array_length string_split str_split "
        "json_extract_path json_extract_path_text json_exists json_valid json_array_length json_keys "
        "date_part datepart date_diff datediff date_sub date_add time_bucket to_timestamp strptime strftime "
        "arg_max arg_min bool_and bool_or count_star any_value histogram entropy kurtosis skewness "
        "approx_quantile quantile_disc quantile_cont mad mode product bit_count bit_length octet_length "
        "ascii chr ord unicode nfc_normalize strip_accents lcase ucase prefix suffix instr position "
        "isfinite isinf isnan gcd lcm factorial even degrees radians sin cos tan asin acos atan atan2 "
        "typeof hash md5_number format_bytes formatreadablesize to_base fmod"
    ),
)

CLICKHOUSE: Final = SqlDialect(
    "clickhouse",
    _names(
        "toUnixTimestamp toUnixTimestamp64Milli toUnixTimestamp64Micro toDate toDate32 toDateTime toDateTime64 "
        "toStartOfDay toStartOfHour toStartOfMinute toStartOfWeek toStartOfMonth toStartOfQuarter "
        "toStartOfYear toStartOfInterval toMonday toYYYYMM toYYYYMMDD toYear toMonth toDayOfMonth toDayOfWeek "
        "toHour toMinute toSecond formatDateTime parseDateTimeBestEffort parseDateTime64BestEffort "
        "dateDiff date_diff age addDays addHours subtractDays subtractHours now now64 today yesterday "
        "hasToken hasTokenCaseInsensitive hasAnyTokens hasAllTokens countSubstrings "
        "countSubstringsCaseInsensitive position positionCaseInsensitive positionUTF8 "
        "positionCaseInsensitiveUTF8 locate match multiMatchAny multiSearchAny like ilike notLike notILike "
        "lowerUTF8 upperUTF8 lengthUTF8 substringUTF8 reverseUTF8 empty notEmpty startsWith endsWith "
        "splitByChar splitByString splitByNonAlpha splitByWhitespace splitByRegexp extractAll "
        "extractAllGroups replaceAll replaceOne replaceRegexpAll replaceRegexpOne trimBoth trimLeft trimRight "
        "JSONHas JSONLength JSONType JSONExtractString JSONExtractInt JSONExtractUInt JSONExtractFloat "
        "JSONExtractBool JSONExtractRaw JSONExtractKeys JSONExtractArrayRaw simpleJSONExtractString "
        "toString toInt8 toInt16 toInt32 toInt64 toUInt8 toUInt16 toUInt32 toUInt64 toFloat32 toFloat64 "
        "toInt64OrNull toFloat64OrNull toDecimal64 toTypeName isNull isNotNull ifNull nullIf assumeNotNull "
        "coalesce multiIf greatest least intDiv intDivOrZero modulo moduloOrZero negate abs "
        "uniq uniqExact uniqCombined uniqHLL12 count countIf sumIf avgIf minIf maxIf any anyLast anyHeavy "
        "argMin argMax topK topKWeighted groupArray groupUniqArray groupArrayDistinct quantile quantiles "
        "quantileExact quantileTDigest median medianExact varPop varSamp stddevPop stddevSamp "
        "arrayJoin arrayMap arrayFilter arrayExists arrayAll arrayCount arraySum arrayMin arrayMax "
        "arraySort arrayReverseSort arrayDistinct arrayUniq arrayElement has hasAll hasAny indexOf length "
        "arrayStringConcat arraySlice arrayConcat arrayFlatten tuple tupleElement untuple "
        "cityHash64 sipHash64 xxHash64 murmurHash3_64 farmHash64 MD5 SHA256 hex unhex base64Encode "
        "base64Decode lower upper concat concatWithSeparator substring trim "
        "row_number rank dense_rank lagInFrame leadInFrame first_value last_value nth_value"
    ),
)

# R2 SQL (Apache DataFusion) speaks a PostgreSQL-like dialect.
R2SQL: Final = SqlDialect(
    "postgres",
    _names("now date_part date_trunc to_timestamp regexp_like regexp_match approx_distinct array_agg"),
)


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    tree: exp.Query
    placeholders: list[exp.Placeholder]  # the ``?`` placeholders, in the order they appear in the text

    def render(
        self,
        dialect: SqlDialect,
        *,
        table: exp.Table | None = None,
        bind: Callable[[int, exp.Placeholder], exp.Expr] | None = None,
        limit: int | None = None,
    ) -> str:
        """The checked query as text for the engine: ``events`` mapped to ``table``, each ``?``
        replaced by ``bind(i, placeholder)``, comments dropped; a SELECT asks for at most ``limit``
        rows (a smaller LIMIT of the user's is kept)."""
        tree = self.tree.copy()
        if limit is not None and isinstance(tree, exp.Select):
            given = tree.args.get("limit")
            expression = given.expression if isinstance(given, exp.Limit) else None
            if not (isinstance(expression, exp.Literal) and expression.is_int and int(expression.this) <= limit):
                tree = tree.limit(limit)
        ctes = _cte_names(tree)
        if table is not None:
            for node in list(tree.find_all(exp.Table)):
                if node.name.lower() == TABLE and TABLE not in ctes:
                    # Keep the user's alias, or alias the real table as 'events' so that
                    # qualified columns (events.ts) still resolve.
                    alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(TABLE))
                    replacement = table.copy()
                    replacement.set("alias", alias.copy())
                    node.replace(replacement)
        if bind is not None:
            ordered = sorted(_placeholders(tree), key=lambda p: p.meta["start"])
            for i, placeholder in enumerate(ordered):
                placeholder.replace(bind(i, placeholder))
        return tree.sql(dialect=dialect.sqlglot, comments=False)


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _placeholders(tree: exp.Expr) -> list[exp.Placeholder]:
    return [p for p in tree.find_all(exp.Placeholder) if p.this is None]


def _parse(query: str, dialect: SqlDialect) -> list[exp.Expr | None]:
    """Parse, recording where each ``?`` stands so parameters bind in text order."""
    engine = Dialect.get_or_raise(dialect.sqlglot)
    parser = engine.parser()
    parser.PLACEHOLDER_PARSERS = {  # type: ignore[misc]
        **parser.PLACEHOLDER_PARSERS,
        TokenType.PLACEHOLDER: lambda self: self.expression(exp.Placeholder(), token=self._prev),
    }
    return parser.parse(engine.tokenize(query), query)


def _function_name(node: exp.Func) -> tuple[str, bool]:
    """(name, modelled): the function's name and whether sqlglot models it as a class."""
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc | exp.ParameterizedAgg | exp.CombinedAggFunc):
        name = node.this.name if isinstance(node.this, exp.Expr) else str(node.this)
        return name, False
    return node.key, True


@functools.cache
def _modelled_classes(dialect: SqlDialect) -> frozenset[str]:
    """The classes sqlglot parses the dialect's own allowed names into (``md5`` -> MD5Digest), so a
    name on the dialect's list is allowed however sqlglot models it."""
    found = set(_FUNCTION_CLASSES)
    for name in dialect.functions:
        for args in ("x", "x, y", "x, y, z"):
            try:
                node = Dialect.get_or_raise(dialect.sqlglot).parse(f"SELECT {name}({args})")[0]
            except (ParseError, TokenError):
                continue
            function = node.find(exp.Func) if node is not None else None
            if function is not None:
                written, modelled = _function_name(function)
                if modelled:
                    found.add(written)
                break
    return frozenset(found)


def _refuse(message: str) -> QueryError:
    return QueryError(f"query refused: {message}")


def check(query: str, dialect: SqlDialect, limits: SqlLimits = SqlLimits()) -> CheckedQuery:
    """The query parsed and checked against the sandbox rules, or a QueryError saying what is refused."""
    if not isinstance(query, str) or not query.strip():
        raise _refuse("the query is empty; send one SELECT over the table 'events'")
    if len(query) > limits.max_chars:
        raise _refuse(f"the query is {len(query):,} characters; the limit is {limits.max_chars:,}")
    try:
        statements = [s for s in _parse(query, dialect) if s is not None and not isinstance(s, exp.Semicolon)]
    except (ParseError, TokenError) as exc:
        raise QueryError(f"SQL does not parse ({dialect.sqlglot} dialect): {str(exc)[:300]}") from None
    except RecursionError:
        raise _refuse("the query is nested too deeply") from None
    if len(statements) != 1:
        raise _refuse(f"send exactly one statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise _refuse(f"only SELECT is allowed (read-only), got {tree.key.upper()}")
    try:
        _check_tree(tree, dialect)
        _check_round_trip(tree, dialect)
    except RecursionError:
        raise _refuse("the query is nested too deeply") from None
    return CheckedQuery(tree, sorted(_placeholders(tree), key=lambda p: p.meta.get("start", 0)))


def _check_tree(tree: exp.Query, dialect: SqlDialect) -> None:
    for node in tree.walk():
        _check_node(node, dialect)
    _check_scopes(tree)


def _check_round_trip(tree: exp.Query, dialect: SqlDialect) -> None:
    """What the engine will run must be what was checked. sqlglot writes a few arguments as raw
    text (a hash length, a collation, a date part), so the rendered query is parsed again, checked
    again, and must render to the very same text: a string that smuggled SQL in does not."""
    probe = tree.copy()
    for placeholder in _placeholders(probe):
        placeholder.replace(exp.null())  # parameters are bound later, as values
    text = probe.sql(dialect=dialect.sqlglot, comments=False)
    try:
        again = [s for s in _parse(text, dialect) if s is not None and not isinstance(s, exp.Semicolon)]
    except (ParseError, TokenError):
        raise _refuse("the query does not survive being written out again (an argument renders as raw SQL)") from None
    if len(again) != 1 or not isinstance(again[0], exp.Query):
        raise _refuse("the query renders as more than one statement (an argument renders as raw SQL)")
    _check_tree(again[0], dialect)
    if again[0].sql(dialect=dialect.sqlglot, comments=False) != text:
        raise _refuse("the query does not render back to itself (an argument renders as raw SQL)")


def _check_node(node: exp.Expr, dialect: SqlDialect) -> None:
    if isinstance(node, exp.Func) and not isinstance(node, exp.Binary | exp.Unary):  # AND, OR are both
        name, modelled = _function_name(node)
        if name.lower() not in (_modelled_classes(dialect) if modelled else dialect.functions):
            shown = node.sql(dialect=dialect.sqlglot).split("(", 1)[0] if modelled else name
            raise _refuse(
                f"function {shown[:60]!r} is not on the allow-list (no table, file, network or system functions)"
            )
        if isinstance(node.parent, exp.From | exp.Join):
            raise _refuse(f"table function {name!r}: only the table 'events' can be read")
        return
    if not isinstance(node, _NODES):
        raise _refuse(f"{node.key.upper()} is not allowed in a query")
    if isinstance(node, exp.Table):
        target = node.this
        if not isinstance(target, exp.Identifier) or node.args.get("db") or node.args.get("catalog"):
            raise _refuse(f"only the table 'events' can be read, not {node.sql()[:80]!r}")
    elif isinstance(node, exp.Column) and (node.args.get("db") or node.args.get("catalog")):
        raise _refuse(f"{node.sql()[:80]!r} names another database or table")
    elif isinstance(node, exp.Collate) and not re.fullmatch(r"[A-Za-z0-9_.]{1,40}", node.expression.name or ""):
        raise _refuse("COLLATE takes a collation name (nocase, noaccent, ...)")
    elif isinstance(node, exp.In) and node.args.get("field") is not None:
        raise _refuse("IN <table> reads a table: write IN (SELECT ... FROM events) or IN (a list)")
    elif isinstance(node, exp.Placeholder) and node.this is not None:
        raise _refuse("use '?' for parameters; named parameters are not accepted")
    elif isinstance(node, exp.Query):
        for clause in ("settings", "format", "into", "locks", "options"):
            if node.args.get(clause):
                raise _refuse(f"a {clause.upper()} clause is not allowed")
    elif isinstance(node, exp.CTE) and node.alias_or_name.lower() == TABLE:
        raise _refuse("a CTE cannot be named 'events'")


def _check_scopes(tree: exp.Query) -> None:
    """Every table a scope reads is ``events`` or a CTE visible in that very scope — a CTE of the
    same name defined elsewhere (a sibling subquery, a later CTE) does not make a table legal."""
    try:
        scopes = traverse_scope(tree)
    except OptimizeError as exc:
        raise _refuse(f"the query's scopes cannot be resolved: {str(exc)[:200]}") from None
    resolved: set[int] = set()
    for scope in scopes:
        visible = {name.lower() for name in scope.cte_sources}
        for node in scope.tables:
            resolved.add(id(node))
            name = node.name.lower()
            if name != TABLE and name not in visible:
                raise _refuse(f"only the table 'events' (and CTEs over it) can be read, not {node.name[:80]!r}")
    for node in tree.find_all(exp.Table):
        if id(node) not in resolved:
            raise _refuse(f"the table {node.sql()[:80]!r} is read from a place the sandbox cannot check")


def literal(value: Any) -> exp.Expr:
    """A Python value as a SQL literal node (for engines that cannot bind parameters)."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise QueryError(f"integer parameter {value} is outside the 64-bit range")
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError(f"parameter {value!r} is not a finite number")
    if isinstance(value, int | float):
        return exp.Literal.number(repr(value))
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if not isinstance(value, str):
        raise QueryError(f"parameter of type {type(value).__name__} is not supported (use str, int, float, bool, None)")
    if "\x00" in value:
        raise QueryError("string parameters must not contain NUL characters")
    return exp.Literal.string(value)


def parse_table(name: str, dialect: SqlDialect) -> exp.Table:
    """A (possibly qualified) table name from settings, as a node."""
    return exp.to_table(name, dialect=dialect.sqlglot)


def count_parameters(checked: CheckedQuery, params: list[Any]) -> None:
    if len(checked.placeholders) != len(params):
        raise QueryError(f"the query has {len(checked.placeholders)} '?' placeholders but {len(params)} parameters")


__all__ = [
    "CLICKHOUSE",
    "DUCKDB",
    "R2SQL",
    "CheckedQuery",
    "SqlDialect",
    "check",
    "count_parameters",
    "literal",
    "parse_table",
]
