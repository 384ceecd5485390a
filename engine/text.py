"""Zero-shot text classification: labels typed by a person, one or many texts."""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.batching import MicroBatcher
from engine.errors import InputError

DEFAULT_TEMPLATE = "This example is {}."
TEXT_FILE_TYPES = (".csv", ".txt")


@dataclass(frozen=True)
class ZeroShotResult:
    """Labels ranked best first, with their scores."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]

    def score_of(self, label: str) -> float:
        return self.scores[self.labels.index(label)]


def parse_labels(text: str | None, max_labels: int, max_chars: int | None = None) -> tuple[str, ...]:
    """Labels separated by commas or newlines: trimmed, empties dropped, repeats (any case) dropped."""
    seen: dict[str, str] = {}
    for raw in re.split(r"[,\n\r]", text or ""):
        label = " ".join(raw.split())
        if label and label.casefold() not in seen:
            seen[label.casefold()] = label
    labels = tuple(seen.values())
    if not labels:
        raise InputError("No candidate labels given; type at least one, separated by commas or one per line "
                         "(e.g. 'urgent, not urgent, phone').")
    if len(labels) > max_labels:
        raise InputError(f"{len(labels)} candidate labels given; at most {max_labels} are accepted. "
                         "Remove some and try again.")
    longest = max(labels, key=len)
    if max_chars is not None and len(longest) > max_chars:
        raise InputError(f"The label '{longest[:40]}...' has {len(longest):,} characters; labels of at most "
                         f"{max_chars:,} characters are accepted (a label is a short name, e.g. 'urgent').")
    return labels


def validate_template(template: str | None, max_chars: int | None = None) -> str:
    """The hypothesis template, trimmed; it must hold exactly one {} where the label goes."""
    template = (template or "").strip()
    example = f"'{DEFAULT_TEMPLATE}'"
    if max_chars is not None and len(template) > max_chars:
        raise InputError(f"The hypothesis template has {len(template):,} characters; at most {max_chars:,} are "
                         f"accepted. It is one short sentence with {{}} where the label goes, e.g. {example}.")
    if template.count("{}") != 1:
        found = "no {}" if "{}" not in template else f"{template.count('{}')} of them"
        raise InputError(f"The hypothesis template must contain exactly one {{}} where the label goes "
                         f"(found {found}); e.g. {example}.")
    try:
        template.format("label")
    except (IndexError, KeyError, ValueError):
        raise InputError(f"The hypothesis template may contain no braces other than the one {{}} "
                         f"(write {{{{ or }}}} for a literal brace); e.g. {example}.") from None
    return template


def check_text(text: str | None, max_chars: int, what: str = "The text") -> str:
    text = (text or "").strip()
    if not text:
        raise InputError(f"{what} is empty; type or paste the text to classify.")
    if len(text) > max_chars:
        raise InputError(f"{what} has {len(text):,} characters; at most {max_chars:,} are accepted.")
    return text


def parse_texts(text: str | None, max_texts: int, max_chars: int) -> list[str]:
    """Several texts typed one per line (blank lines skipped)."""
    return _checked_texts([line for line in (text or "").splitlines() if line.strip()], max_texts, max_chars)


def read_texts(path: str | os.PathLike, max_texts: int, max_chars: int) -> list[str]:
    """Texts from a .txt file (one per line) or a .csv file (the column named text, else the first).

    A CSV's first row is its header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_FILE_TYPES:
        raise InputError(f"{path.name}: only {' and '.join(TEXT_FILE_TYPES)} files are accepted.")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not UTF-8 text; save it as UTF-8 and upload it again.") from None
    if suffix == ".txt":
        return parse_texts(content, max_texts, max_chars)
    try:
        rows = [row for row in csv.reader(io.StringIO(content)) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise InputError(f"{path.name} is not a readable CSV file ({exc}).") from None
    if len(rows) < 2:
        raise InputError(f"{path.name} has no rows under its header; a CSV needs a header row, then one "
                         "text per row (in a column named text, or the first column).")
    header = [cell.strip().casefold() for cell in rows[0]]
    column = header.index("text") if "text" in header else 0
    return _checked_texts([row[column] if column < len(row) else "" for row in rows[1:]], max_texts, max_chars)


def _checked_texts(texts: list[str], max_texts: int, max_chars: int) -> list[str]:
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise InputError("No texts given; type one text per line, or upload a .txt (one per line) or "
                         ".csv (a column named text, or the first column).")
    if len(texts) > max_texts:
        raise InputError(f"{len(texts)} texts given; at most {max_texts} are classified at once.")
    return [check_text(t, max_chars, what=f"Text {i}") for i, t in enumerate(texts, 1)]


def classify_texts(pipe: Any, texts: Sequence[str], labels: Sequence[str], multi_label: bool,
                   template: str = DEFAULT_TEMPLATE, pairs_per_forward: int | None = None) -> list[ZeroShotResult]:
    """Each text scored against every label in one pipeline call: all (text, label) pairs in one
    forward pass, or in passes of pairs_per_forward."""
    if not texts:
        return []
    labels = list(labels)
    pairs = len(texts) * len(labels)
    outputs = pipe(list(texts), candidate_labels=labels, multi_label=bool(multi_label),
                   hypothesis_template=template, batch_size=min(pairs, pairs_per_forward or pairs))
    if isinstance(outputs, dict):
        outputs = [outputs]
    return [ZeroShotResult(tuple(o["labels"]), tuple(float(s) for s in o["scores"])) for o in outputs]


def _classify_batch(key: tuple[Any, tuple[str, ...], bool, str, int | None], texts: list[str]) -> list[ZeroShotResult]:
    pipe, labels, multi_label, template, pairs_per_forward = key
    return classify_texts(pipe, texts, labels, multi_label, template, pairs_per_forward)


def classify_with(batcher: MicroBatcher, pipe: Any, texts: Sequence[str], labels: Sequence[str],
                  multi_label: bool, template: str = DEFAULT_TEMPLATE,
                  pairs_per_forward: int | None = None) -> list[ZeroShotResult]:
    """classify_texts through the batcher: texts with the same labels and settings share a batch."""
    key = (pipe, tuple(labels), bool(multi_label), template, pairs_per_forward)
    return batcher.map(_classify_batch, key, texts)
