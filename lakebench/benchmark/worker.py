"""One option measured in a process of its own: ``python -m lakebench.benchmark.worker``.

Every option starts the same way: a fresh interpreter, empty local caches, nothing of another
option in memory. The process reads its task (one JSON line) on stdin, then:

1. asks the task's first query and notes the **time to first answer** from the process's start
   (interpreter, imports, opening the engine, catalog and index loading, the query) — with
   ``transport: http``, the option is the db service started by this process and asked over HTTP;
2. runs the warm-up queries (not recorded);
3. for each repetition and workload, tells the parent ``mark <workload> <rep>`` on stderr and waits
   for its ``ok`` on stdin — the parent reads the object store's request counters at each mark — then
   times each query (``perf_counter_ns`` around one call), canonicalising answers after the timing;
4. prints one JSON document on stdout; ``progress <n>`` lines on stderr drive the parent's bar.

The parent checks the answers against its oracle after the process is gone: nothing of the
checking is inside a timing.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from lakebench.core.process import process_age_s


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _barrier(label: str, stdin: TextIO) -> None:
    _say(f"mark {label}")
    if stdin.readline().strip() != "ok":
        raise SystemExit("the parent went away")


def run(task: dict[str, Any], stdin: TextIO) -> dict[str, Any]:
    from lakebench.benchmark.options import HttpRunner, OptionRunner, option_spec
    from lakebench.benchmark.queries import Query
    from lakebench.core.config import S3Settings, Settings
    from lakebench.lake.catalog import Lake

    s = task["settings"]
    settings = Settings(lake=s["lake"], catalog=s["catalog"], s3=S3Settings(**s["s3"]))
    first = Query.from_list(task["first"])
    _barrier("first 0", stdin)  # what opening and the first answer read is counted apart
    lake = Lake(settings)
    opened = time.perf_counter()
    spec = option_spec(task["option"])
    # End to end (http): the db service with this option, asked over HTTP; else the option in process.
    runner = HttpRunner(spec, settings) if task.get("transport") == "http" else OptionRunner(spec, lake)
    open_s = time.perf_counter() - opened
    try:
        raw, _ = runner.ask(first)
        first_answer_s = process_age_s()
        out: dict[str, Any] = {
            "first_answer_s": first_answer_s,
            "open_s": open_s,
            "open_to_first_s": time.perf_counter() - opened,
            "first_answer": runner.canonical(first, raw),
            "workloads": {},
        }
        _barrier("warmup 0", stdin)
        began = time.perf_counter()
        for item in task["warmup"]:
            runner.ask(Query.from_list(item))
        out["warmup_s"] = time.perf_counter() - began
        _say(f"progress {len(task['warmup'])}")
        began = time.perf_counter()
        for rep in range(task["repeat"]):
            for w in task["workloads"]:
                queries = [Query.from_list(q) for q in w["queries"][rep]]
                _barrier(f"{w['name']} {rep}", stdin)
                samples, raws, served = [], [], []
                for q in queries:
                    started = time.perf_counter_ns()
                    result, hit = runner.ask(q)
                    samples.append((time.perf_counter_ns() - started) / 1e6)
                    raws.append(result)
                    served.append(hit)
                entry = out["workloads"].setdefault(w["name"], {"samples_ms": [], "answers": [], "cache_hits": []})
                entry["samples_ms"].extend(samples)
                entry["answers"].extend(runner.canonical(q, r) for q, r in zip(queries, raws, strict=True))
                entry["cache_hits"].extend(served)
                _say(f"progress {len(queries)}")
        out["timed_s"] = time.perf_counter() - began
        if task.get("loops"):
            out["loops"] = _loops(runner, task["loops"], stdin)
        _barrier("end 0", stdin)
        return out
    finally:
        runner.close()
        lake.close()


def _loops(runner: Any, spec: dict[str, Any], stdin: TextIO) -> list[dict[str, Any]]:
    """The loop workload's queries in a closed loop and, with a rate, an open one (wrk2's rule), at
    each concurrency level; answers kept by position and canonicalised after each loop."""
    from lakebench.benchmark.loop import closed_loop, open_loop
    from lakebench.benchmark.queries import Query

    queries = [Query.from_list(q) for q in spec["queries"]]
    results = []
    for level in spec["levels"]:
        for mode in ("closed", "open") if spec.get("rate") else ("closed",):
            answers: dict[int, Any] = {}

            def ask(item: tuple[int, Query], answers: dict[int, Any] = answers) -> None:
                answers[item[0]] = runner.ask(item[1])[0]

            items = list(enumerate(queries))
            _barrier(f"loop-{mode}-{level} 0", stdin)
            if mode == "open":
                loop = open_loop(ask, items, float(spec["rate"]), concurrency=level)
            else:
                loop = closed_loop(ask, items, concurrency=level)
            canonical = [runner.canonical(q, answers[i]) if i in answers else None for i, q in items]
            results.append(loop.summary() | {"samples_us": loop.samples_us, "answers": canonical})
            _say(f"progress {len(queries)}")
    return results


def main() -> int:
    task = json.loads(sys.stdin.readline())
    result = run(task, sys.stdin)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
