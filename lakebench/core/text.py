"""The one tokenizer every engine's full-text search agrees on.

A token is a maximal run of characters that are not ASCII punctuation, space or control
characters (so letters and digits of any script, and non-ASCII symbols, belong to tokens),
lower-cased. ClickHouse's ``hasToken`` splits on exactly these ASCII separators; DuckDB and
tantivy are given the same rule as a regular expression.
"""

from __future__ import annotations

import re
from typing import Final

# ASCII 0x00-0x2f, 0x3a-0x40, 0x5b-0x60, 0x7b-0x7f are separators: everything but [0-9A-Za-z].
SEPARATOR_CLASS: Final = r"\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f"
TOKEN_PATTERN: Final = rf"[^{SEPARATOR_CLASS}]+"
_TOKEN = re.compile(TOKEN_PATTERN)
MAX_TERMS: Final = 16


def tokens(text: str) -> list[str]:
    # Lower-casing first is the same: no character lower-cases into (or out of) an ASCII separator.
    return _TOKEN.findall(text.lower())


def query_terms(query: str) -> list[str]:
    """Distinct tokens of a query, in order; at most MAX_TERMS."""
    terms = list(dict.fromkeys(tokens(query)))
    return terms[:MAX_TERMS]


def document_text(title: str | None, body: str | None) -> str:
    return f"{title or ''} {body or ''}"


def term_regex(term: str) -> str:
    """A RE2 pattern matching ``term`` as a whole token. Tokens hold no ASCII punctuation, so no
    regex metacharacter can appear in ``term``."""
    return rf"(^|[{SEPARATOR_CLASS}]){term}($|[{SEPARATOR_CLASS}])"
