"""The Speech tab's many-files part: drop several recordings, get each one's transcript and downloads
and one zip of all subtitles (API /transcribe_many). The chunks of all files share model batches."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr

from engine.batch import Limits, run_many, write_many
from engine.errors import InputError
from engine.registry import check_model_allowed
from engine.speech import TranscribeOptions
from ui.common import cancellable, get_pipeline, hand_over_path, stop_check, user_errors
from ui.zerogpu import audio_seconds, gpu, seconds_for_audio

TASK = "automatic-speech-recognition"
AUTO_LANGUAGE = "auto"


def many_seconds(files=None, *args, **kwargs) -> int:
    """ZeroGPU duration for a many-files request: from the files' total length (headers only)."""
    return seconds_for_audio(sum(audio_seconds(str(f)) for f in files or []))


def result_rows(results: list[dict]) -> list[list]:
    """The table: file, length (s), and its first words or why it failed."""
    rows = []
    for r in results:
        if r["error"]:
            rows.append([r["file"], None, f"⚠ {r['error']}"])
        else:
            words = r["text"] if len(r["text"]) <= 120 else r["text"][:117] + "..."
            rows.append([r["file"], r["duration"], words or (r["note"] or "")])
    return rows


def build_many(registry, settings, model: gr.Dropdown, timestamps: gr.Radio, language: gr.Dropdown,
               task: gr.Radio, batch: gr.Slider, beams: gr.Slider, prompt: gr.Textbox) -> None:
    """Components and events of the many-files part; the other arguments are the tab's own pickers."""
    from ui.tabs.speech import segments_json  # the tab's own API shape for segments

    limits = Limits.from_settings(settings)
    max_batch = max(1, settings.max_batch_size)
    with gr.Accordion("Many recordings at once", open=False, elem_id="speech-many"):
        gr.Markdown(f"Drop up to {settings.max_files} recordings (select a folder's files and drop them "
                    "together). Each gets its transcript and downloads; the zip holds all subtitles. A file "
                    "that cannot be read gets its own message and the others are still transcribed. "
                    "The options above (model, timestamps, language, batch size) apply.")
        with gr.Row():
            with gr.Column(scale=1):
                uploads = hand_over_path(gr.File(file_count="multiple", type="filepath", label="Recordings",
                                                 elem_id="speech-many-input"))
                run = gr.Button("Transcribe all", variant="primary", elem_id="speech-many-run")
                stop = gr.Button("Stop", variant="stop", elem_id="speech-many-stop")
            with gr.Column(scale=1):
                summary = gr.Markdown(elem_id="speech-many-summary")
                table = gr.Dataframe(headers=["file", "seconds", "transcript"], datatype=["str", "number", "str"],
                                     interactive=False, wrap=True, max_height=360, label="Results",
                                     column_widths=["25%", "12%", "63%"], elem_id="speech-many-table")
                archive = gr.File(label="All subtitles (.zip)", interactive=False, elem_id="speech-many-zip")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                    elem_id="speech-many-downloads")
                results_json = gr.JSON(label="Results", visible=False, elem_id="speech-many-json")
    shown = gr.State()

    @cancellable
    @gpu(duration=many_seconds)
    @user_errors
    def transcribe_many(files: list[str] | None = None, model: str | None = None, timestamps: str = "segments",
                        language: str | None = AUTO_LANGUAGE, task: str = "transcribe", batch_size: int = 8,
                        beams: int = 0, prompt: str = "", progress=gr.Progress(track_tqdm=True)):
        """Transcribe several recordings at once; their chunks share model batches.

        Args:
            files: the recordings (wav, flac, mp3, ogg, m4a or anything ffmpeg reads), at most the server's --max-files.
            model: the speech-recognition model, one of those the server offers.
            timestamps: 'none', 'segments' or 'words' (word times in each segment).
            language: a Whisper language code, or 'auto' to detect it (multilingual Whisper models only).
            task: 'transcribe', or 'translate' for English text from speech in any language (Whisper only).
            batch_size: chunks run at once, from 1 to the server's --max-batch-size.
            beams: beam-search width from 1 (greedy, fastest) to 8; 0 = auto (5 on a CPU, 1 on a GPU).
            prompt: names and words the speech uses, read by Whisper before every piece (at most 1000 characters).

        Returns:
            results: one entry per file, in order: {file, text, segments, duration, note, error, downloads}; error is
                null or the one line saying why that file was not transcribed.
            downloads: every transcribed file's .srt, .vtt, .txt and .json, named after it.
            zip: all of those in one .zip (with errors.txt naming the files that failed).
        """
        paths = [str(f) for f in files or []]
        if not paths:
            raise InputError("No recordings were given; drop or upload one or more audio files.")
        if len(paths) > limits.max_files:  # before any model loads
            raise InputError(f"{len(paths)} recordings given; this server transcribes at most {limits.max_files} "
                             "at once (--max-files). Send the rest in another request.")
        model = model or model_default
        check_model_allowed(TASK, model, settings)
        options = TranscribeOptions(
            timestamps=timestamps, mode="auto", batch_size=min(int(batch_size), max_batch), num_beams=int(beams) or None,
            language=None if language in (None, "", AUTO_LANGUAGE) else language, task=task or "transcribe",
            prompt=prompt or "")
        started = time.perf_counter()
        progress((0, None), desc="Reading the recordings")
        pipe = get_pipeline(registry, TASK, model, progress)
        names = [Path(p).name for p in paths]  # Gradio keeps an upload's own name inside its cache folder
        results = run_many(pipe, paths, options, limits, names,
                           progress=lambda done, total: progress((round(done), round(total)), desc="Transcribing",
                                                                 unit="s of audio"),
                           should_stop=stop_check())
        folder = tempfile.mkdtemp(prefix="speech-many-", dir=archive.GRADIO_CACHE)
        results, zip_path = write_many(results, folder)
        rows = [{"file": r.name, "text": r.transcript.text if r.transcript else "",
                 "segments": segments_json(r.transcript) if r.transcript else [],
                 "duration": round(r.transcript.duration, 3) if r.transcript else None,
                 "note": r.transcript.note if r.transcript else None, "error": r.error,
                 "downloads": [p.name for p in r.files]} for r in results]
        files_out = [str(p) for r in results for p in r.files]
        return rows, files_out, str(zip_path), (rows, time.perf_counter() - started)

    model_default = model.value

    def show(state):
        if not state:
            return "", [], None
        rows, seconds = state
        failed = sum(1 for r in rows if r["error"])
        done = len(rows) - failed
        text = f"**{done}** of {len(rows)} recordings transcribed in {seconds:.1f} s"
        if failed:
            text += f" · **{failed}** could not be: see the table"
        return text, result_rows(rows), None

    running = run.click(transcribe_many, [uploads, model, timestamps, language, task, batch, beams, prompt],
                        [results_json, downloads, archive, shown], api_name="transcribe_many")
    running.then(show, shown, [summary, table, shown], api_name="speech_many_show", api_visibility="private",
                 queue=False)
    stop.click(None, cancels=[running], api_name="speech_many_stop", api_visibility="private")
