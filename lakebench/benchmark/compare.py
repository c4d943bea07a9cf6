"""Did a change make it faster or slower? Two runs' raw samples, compared as asv compares them.

A benchmark is called changed only when both hold: the two sample sets differ by a Mann–Whitney U
test (two-sided, no assumption about the shape of latency distributions, which are skewed) at
``alpha``, and the ratio of medians is beyond ``factor`` (a real but tiny shift is not news). On a
shared, noisy machine the first rule keeps noise from being reported; the second keeps statistical
significance from being mistaken for importance.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from scipy.stats import mannwhitneyu

from lakebench.benchmark.results import load_result
from lakebench.core.errors import ConfigError

Change = Literal["slower", "faster", "no change", "not comparable", "wrong answers"]


@dataclass(frozen=True, slots=True)
class Comparison:
    benchmark: str
    engine: str
    profile: str
    before_p50_ms: float
    after_p50_ms: float
    ratio: float | None  # after / before, of the medians
    p_value: float | None
    change: Change
    samples: tuple[int, int]


def compare_samples(
    before: list[float], after: list[float], *, alpha: float = 0.05, factor: float = 1.10
) -> tuple[float, float, Change]:
    """(ratio of medians, p-value, verdict) for two sets of samples of one benchmark."""
    if factor <= 1:
        raise ConfigError(f"--factor must be above 1, got {factor}")
    if len(before) < 2 or len(after) < 2:
        return float("nan"), float("nan"), "not comparable"
    base, now = statistics.median(before), statistics.median(after)
    ratio = now / base if base > 0 else float("inf")
    p_value = float(mannwhitneyu(before, after, alternative="two-sided").pvalue)
    if p_value < alpha and ratio >= factor:
        return ratio, p_value, "slower"
    if p_value < alpha and ratio <= 1 / factor:
        return ratio, p_value, "faster"
    return ratio, p_value, "no change"


def compare_results(before: Path, after: Path, *, alpha: float = 0.05, factor: float = 1.10) -> list[Comparison]:
    """Every benchmark the two result files share (by profile, name and engine), compared."""
    try:
        a, b = load_result(before), load_result(after)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a result file: {exc}") from None
    later = {(x.profile, x.name, x.engine): x for x in b.benchmarks}
    rows = []
    for old in a.benchmarks:
        new = later.get((old.profile, old.name, old.engine))
        if new is None:
            continue
        ratio, p_value, change = compare_samples(old.samples_ms, new.samples_ms, alpha=alpha, factor=factor)
        if new.errors:  # a faster wrong answer is no improvement
            change = "wrong answers"
        samples = (len(old.samples_ms), len(new.samples_ms))
        finite = [None if v != v else v for v in (ratio, p_value)]  # NaN is no JSON number
        rows.append(
            Comparison(old.name, old.engine, old.profile, old.p50_ms, new.p50_ms, finite[0], finite[1], change, samples)
        )
    if not rows:
        raise ConfigError(f"{before} and {after} share no benchmark (by profile, name and engine)")
    return rows


def as_dicts(rows: list[Comparison]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
