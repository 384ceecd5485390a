"""`python app.py transcribe FILE...`: the Speech tab's engine from the terminal, no server.

Files (or folders, whose files are taken in name order) are transcribed with the tab's VAD cutting,
batches shared across files, the same subtitles and the same limits; outputs are named after the
inputs. Exit code 1 when any input failed (one line each on stderr), after the others are written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from engine.cli import add_settings_arguments, prepare_environment, settings_from_args
from engine.speech import SEGMENT_TIMES, TIMESTAMPS
from engine.subtitles import FORMATS

TASK = "automatic-speech-recognition"
SETTINGS_FLAGS = ("asr_model", "device", "dtype", "offline", "allow_any_model", "max_file_mb", "max_audio_seconds",
                  "min_audio_seconds", "max_files", "max_total_audio_seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py transcribe", description="Transcribe recordings to subtitles with the Speech tab's engine "
        "(VAD cutting, batches shared across files), without a server.")
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="audio files, or folders of them")
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the outputs (default: here)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {','.join(FORMATS)}")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks decoded at once (default 8)")
    parser.add_argument("--timestamps", choices=TIMESTAMPS, default="segments")
    parser.add_argument("--language", default=None, help="a Whisper language code (multilingual models)")
    parser.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    parser.add_argument("--beams", type=int, default=None,
                        help="beam-search width, 1 = greedy; default auto: 5 on a CPU, 1 on a GPU")
    parser.add_argument("--segment-times", choices=SEGMENT_TIMES, default=SEGMENT_TIMES[0],
                        help="aligned (default): one decoding pass per chunk, segment times from the words' "
                             "alignment and the VAD; tokens: Whisper's timestamp tokens (slower)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, SETTINGS_FLAGS)
    return parser


def expand(inputs: Sequence[str]) -> list[Path]:
    """Files as given; a folder stands for the files directly inside it (hidden ones left out), by name.
    A file named twice (itself and through its folder) is transcribed once."""
    out: dict[Path, Path] = {}
    for item in inputs:
        path = Path(item)
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() \
            else [path]
        for p in found:
            out.setdefault(p.resolve(), p)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    formats = [f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip()]
    bad = sorted(set(formats) - set(FORMATS))
    if bad or not formats:
        raise SystemExit(f"error: unknown format {', '.join(bad) or '(none given)'}; choose from {','.join(FORMATS)}")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    prepare_environment(settings)

    from engine.batch import Limits, run_many, write_many
    from engine.devices import DeviceError
    from engine.errors import InputError
    from engine.registry import ModelLoadError, PipelineRegistry
    from engine.speech import TranscribeOptions

    paths = expand(args.inputs)
    if not paths:
        raise SystemExit("error: no files found in " + ", ".join(args.inputs))
    try:
        options = TranscribeOptions(timestamps=args.timestamps, batch_size=args.batch_size, num_beams=args.beams,
                                    language=args.language, task=args.task, segment_times=args.segment_times)
        pipe = PipelineRegistry(settings).get(TASK, settings.asr_model)  # the operator's model, or the default
    except (InputError, DeviceError, ModelLoadError) as exc:
        raise SystemExit(f"error: {exc}") from None
    limits = Limits.from_settings(settings)
    out = Path(args.out)
    failed = 0
    # Groups of --max-files files: the limits bound one group's memory, as they bound one request's.
    group_size = max(1, limits.max_files)
    bar = _bar(len(paths), args.no_progress)
    stems_used: set[str] = set()
    for first in range(0, len(paths), group_size):
        group = paths[first:first + group_size]
        done_before = bar.n if bar else 0

        def progress(done: int, total: int) -> None:
            if bar and total:
                bar.n = done_before + len(group) * done / total
                bar.refresh()

        try:
            results = run_many(pipe, [str(p) for p in group], options, limits, [p.name for p in group], progress)
        except InputError as exc:
            raise SystemExit(f"error: {exc}") from None
        results = [_unique(r, stems_used) for r in results]
        written, _ = write_many(results, out, formats, zip_name=None)
        if bar:
            bar.n = done_before + len(group)
            bar.refresh()
        for path, result in zip(group, written):
            if result.error:
                failed += 1
                _say(bar, f"error: {path}: {result.error}", sys.stderr)
            else:
                shown = ", ".join(p.name for p in result.files) or "nothing"
                _say(bar, f"{path} -> {shown}" + (f" ({result.transcript.note})" if result.transcript.note else ""),
                     sys.stdout)
    if bar:
        bar.close()
    if failed:
        print(f"{failed} of {len(paths)} inputs failed; the others were written to {out}", file=sys.stderr)
        return 1
    return 0


def _unique(result, used: set[str]):
    """Stems stay unique across groups too (two 'talk.wav' in different folders: talk, talk-2)."""
    from engine.batch import FileResult

    stem, n = result.stem, 1
    while stem.lower() in used:
        n += 1
        stem = f"{result.stem}-{n}"
    used.add(stem.lower())
    return FileResult(result.name, stem, result.transcript, result.error, result.files)


def _bar(total: int, off: bool):
    if off:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="Transcribing", file=sys.stderr, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.1f}/{total} files [{elapsed}<{remaining}]")


def _say(bar, line: str, stream) -> None:
    if bar:
        bar.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)


if __name__ == "__main__":
    sys.exit(main())
