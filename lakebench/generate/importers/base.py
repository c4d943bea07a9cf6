"""Shared pieces of the importers: opening (possibly compressed) inputs and reading JSON lines."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lakebench.core.errors import InputError
from lakebench.core.validate import Problem


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One input record mapped to a raw event, or the problems that stopped the mapping."""

    position: int
    raw: dict[str, Any] | None
    problems: tuple[Problem, ...] = ()
    unit: str = "line"


class MappingError(Exception):
    """A source record lacks what its format promises; names the source field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.problem = Problem(field, message)


def _decompressed(stream: Any) -> BinaryIO:
    """A stream that cannot be read twice (a pipe), decompressed when its first bytes are gzip's or
    bzip2's magic; peeked, not consumed."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
    magic = buffered.peek(3)[:3]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic == b"BZh":
        return bz2.BZ2File(buffered, "rb")  # type: ignore[return-value]
    return buffered


def open_input(path: Path | str) -> BinaryIO:
    """A binary stream over a file ('-' is stdin), decompressing .gz and .bz2 by their magic bytes."""
    if str(path) == "-":
        return _decompressed(sys.stdin.buffer)
    p = Path(path)
    try:
        with p.open("rb") as sniff:
            magic = sniff.read(3)
        if magic[:2] == b"\x1f\x8b":
            return gzip.open(p, "rb")  # type: ignore[return-value]
        if magic == b"BZh":
            return bz2.open(p, "rb")  # type: ignore[return-value]
        return p.open("rb")
    except FileNotFoundError:
        raise InputError(f"input file {p} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"input {p} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read input file {p}: {exc.strerror}") from None


def json_lines(path: Path | str) -> Iterator[tuple[int, Any | Problem]]:
    """(line number, parsed JSON value or the Problem with that line), skipping blank lines."""
    stream = open_input(path)
    try:
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, Problem("(line)", f"is not valid UTF-8 (byte {exc.start})")
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, Problem("(json)", f"malformed JSON: {exc.msg} at column {exc.colno}")
            except RecursionError:
                yield lineno, Problem("(json)", "malformed JSON: nested too deeply")
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def map_json_lines(path: Path | str, mapper: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[SourceRecord]:
    for lineno, value in json_lines(path):
        if isinstance(value, Problem):
            yield SourceRecord(lineno, None, (value,))
        elif not isinstance(value, dict):
            yield SourceRecord(lineno, None, (Problem("(record)", "must be a JSON object"),))
        else:
            try:
                yield SourceRecord(lineno, mapper(value))
            except MappingError as exc:
                yield SourceRecord(lineno, None, (exc.problem,))
