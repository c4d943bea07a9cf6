"""The full-text index's tokenizer (tantivy's whitespace tokenizer over ``_spaced`` text) gives the
tokens of lakebench's one rule (core/text.py), which the other engines and the queries use."""

from __future__ import annotations

import unicodedata

import tantivy
from hypothesis import given, settings
from hypothesis import strategies as st

from lakebench.core.text import TOKEN_PATTERN, tokens
from lakebench.index.fulltext import _analyzer, _spaced

ANALYZER = _analyzer()
TRICKY = "\t\n\x0b\x0c\r \u00a0\u2003\u3000\u0085-_.,:;!?'\"()[]{}<>/\\|@#$%^&*+=~`\x00\x1f\x7fİ\u212aßΣ東京🎉é"


# The rule as a regular expression, as the index tokenized before: the change must give its tokens.
REGEX = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(TOKEN_PATTERN)).filter(tantivy.Filter.lowercase()).build()


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8"), max_size=80))
def test_the_index_tokenizes_as_the_rule_does(text: str) -> None:
    assert ANALYZER.analyze(_spaced(text)) == REGEX.analyze(text)
    # Python's lower() (Unicode 14 in 3.11) and tantivy's (Rust's, newer) differ on scripts encoded
    # since: compare with the rule's own function on the characters both versions case alike.
    if all(unicodedata.category(c) != "Cn" for c in text):
        assert ANALYZER.analyze(_spaced(text)) == tokens(text)


def test_separators_split_and_other_characters_do_not() -> None:
    text = "Foo-BAR baz\u00a0qux x\x0by 東京_tower émoji🎉end"
    assert ANALYZER.analyze(_spaced(text)) == ["foo", "bar", "baz\u00a0qux", "x", "y", "東京", "tower", "émoji🎉end"]
