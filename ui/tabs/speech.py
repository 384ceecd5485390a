"""Speech tab: drop or record audio, get a transcript with timestamps and subtitle files."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from pathlib import Path

import gradio as gr

from engine.errors import InputError
from engine.registry import allowed_models, check_model_allowed, model_source
from engine.speech import (CPU_BEAMS, MAX_BEAMS, MAX_PROMPT_CHARS, MODES, TIMESTAMPS, Transcript, TranscribeOptions,
                           decode_audio, offers_language, transcribe, whisper_languages)
from engine.subtitles import SubtitleOptions, clock, write_all
from engine.urls import URLFetcher
from ui.common import (cancellable, get_pipeline, open_choices, standalone, stop_check, time_left, upload_or_url,
                       url_box, user_errors)
from ui.speech_live import build_live
from ui.speech_many import build_many
from ui.zerogpu import gpu, speech_seconds

TASK = "automatic-speech-recognition"
RATE = 16000  # every offered model's rate; a model with another one gets the audio decoded again
ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = sorted(str(p) for p in ASSETS.glob("speech_example*.flac"))
AUTO_LANGUAGE = "auto"
MODE_HELP = ("auto: vad when the audio is longer than the model's window (30 s for Whisper) · "
             "sequential: the model's own long-form decoding · chunked: fixed 30 s windows with overlap · "
             "vad: cut at silences found by silero-vad, run in batches")


def segments_json(result: Transcript) -> list[dict]:
    """What the API returns: [{"start", "end", "text"}] (+ "words" when word times were asked for)."""
    rows = []
    for seg in result.segments:
        row = {"start": seg.start, "end": seg.end, "text": seg.text}
        if seg.words:
            row["words"] = [{"start": w.start, "end": w.end, "text": w.text} for w in seg.words]
        rows.append(row)
    return rows


def summary(result: Transcript, seconds: float) -> str:
    minutes, rest = divmod(int(round(result.duration)), 60)
    parts = [f"**{minutes}:{rest:02d}** of audio", f"mode **{result.mode}**",
             f"{len(result.segments)} segments", f"transcribed in {seconds:.1f} s"]
    text = " · ".join(parts)
    return f"{text}\n\n{result.note}" if result.note else text


def _file_stem(path: str) -> str:
    return re.sub(r"[^\w.-]+", "_", Path(path).stem).strip("._")[:60] or "transcript"


def build(registry, settings, fetcher: URLFetcher | None = None) -> None:
    fetcher = fetcher or URLFetcher.from_settings(settings)
    models = allowed_models(TASK, settings)

    def language_offered(choice: str) -> bool:
        source, hub = model_source(TASK, choice, settings)
        return offers_language(source, local=not hub and choice in models)  # a typed name reads no folder

    max_batch = max(1, settings.max_batch_size)

    gr.Markdown("Transcribe speech with a `transformers` speech-recognition pipeline: drop a file "
                "(wav, flac, mp3, ogg, m4a) or record, then download the transcript as subtitles.")
    with gr.Row():
        with gr.Column(scale=1):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio (drop, upload or record)",
                             elem_id="speech-audio")
            url = url_box(fetcher, "speech-url", "https://example.com/speech.flac")
            model = open_choices(gr.Dropdown(models, value=models[0], label="Model", elem_id="speech-model",
                                             allow_custom_value=settings.allow_any_model))
            timestamps = gr.Radio(list(TIMESTAMPS), value="segments", label="Timestamps", elem_id="speech-timestamps")
            with gr.Row(visible=language_offered(models[0]), elem_id="speech-language-row") as language_row:
                language = gr.Dropdown([("Detect automatically", AUTO_LANGUAGE), *whisper_languages()],
                                       value=AUTO_LANGUAGE, label="Language", elem_id="speech-language")
                task = gr.Radio(["transcribe", "translate"], value="transcribe", label="Task",
                                info="translate: English text from speech in any language", elem_id="speech-task")
            with gr.Accordion("Long audio and decoding", open=False):
                mode = gr.Radio(list(MODES), value="auto", label="Long-audio mode", info=MODE_HELP,
                                elem_id="speech-mode")
                with gr.Row():
                    batch = gr.Slider(1, max_batch, value=min(8, max_batch), step=1, precision=0,
                                      label="Batch size",
                                      info="chunks run at once (chunked and vad modes)", elem_id="speech-batch")
                    beams = gr.Slider(0, MAX_BEAMS, value=0, step=1, precision=0, label="Beams",
                                      info=f"0 = auto ({CPU_BEAMS} on a CPU, greedy on a GPU); 1 = greedy, fastest",
                                      elem_id="speech-beams")
                prompt = gr.Textbox("", label="Prompt", max_length=MAX_PROMPT_CHARS, elem_id="speech-prompt",
                                    placeholder="Names and words the speech uses, spelled as you want them",
                                    info="Whisper only: read before every piece of audio")
            with gr.Accordion("Subtitles", open=False):
                with gr.Row():
                    line_chars = gr.Slider(0, 120, value=SubtitleOptions.max_line_chars, step=1, precision=0,
                                           label="Characters per line", info="0: no limit",
                                           elem_id="speech-line-chars")
                    lines = gr.Slider(0, 4, value=SubtitleOptions.max_lines, step=1, precision=0,
                                      label="Lines per cue", info="0: no limit", elem_id="speech-lines")
                with gr.Row():
                    cue_words = gr.Slider(0, 20, value=0, step=1, precision=0, label="Words per cue",
                                          info="0: no limit; uses word timestamps", elem_id="speech-cue-words")
                    word_cues = gr.Checkbox(False, label="One cue per word (karaoke style)",
                                            info="uses word timestamps", elem_id="speech-word-cues")
            run = gr.Button("Transcribe", variant="primary", elem_id="speech-run")
            stop = gr.Button("Stop", variant="stop", elem_id="speech-stop")
            if EXAMPLES:
                gr.Examples([[p] for p in EXAMPLES], inputs=audio, label="Example", api_name="speech_example",
                            elem_id="speech-examples")
        with gr.Column(scale=1):
            info = gr.Markdown(elem_id="speech-summary")
            text = gr.Textbox(label="Transcript", lines=8, max_lines=20, buttons=["copy"], elem_id="speech-text")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                            elem_id="speech-files")
            table = gr.Dataframe(headers=["start", "end", "text"], datatype=["str", "str", "str"],
                                 interactive=False, wrap=True, max_height=420, label="Segments (m:ss.mmm)",
                                 column_widths=["15%", "15%", "70%"], elem_id="speech-segments")
            words = gr.Dataframe(headers=["start", "end", "word"], datatype=["str", "str", "str"],
                                 interactive=False, max_height=300, label="Words (m:ss.mmm)", visible=False,
                                 column_widths=["22%", "22%", "56%"], elem_id="speech-words")
            segments = gr.JSON(label="Segments", visible=False, elem_id="speech-json")  # for API callers
    result_state = gr.State()

    @cancellable
    @gpu(duration=speech_seconds)
    @user_errors
    def transcribe_audio(audio: str | None = None, model: str | None = None, timestamps: str = "segments",
                         mode: str = "auto", language: str | None = AUTO_LANGUAGE, task: str = "transcribe",
                         batch_size: int = 8, beams: int = 0, url: str | None = None,
                         line_chars: int = SubtitleOptions.max_line_chars, lines: int = SubtitleOptions.max_lines,
                         cue_words: int = 0, word_cues: bool = False, prompt: str = "",
                         progress=gr.Progress(track_tqdm=True)):
        """Transcribe speech, with timestamps and subtitle files.

        Args:
            audio: the recording (wav, flac, mp3, ogg, m4a or anything ffmpeg reads); leave empty when giving url.
            model: the speech-recognition model, one of those the server offers.
            timestamps: 'none', 'segments' or 'words' (word times in each segment).
            mode: long-audio mode: 'auto', 'sequential', 'chunked' or 'vad'.
            language: a Whisper language code, or 'auto' to detect it (multilingual Whisper models only).
            task: 'transcribe', or 'translate' for English text from speech in any language (Whisper only).
            batch_size: chunks run at once in the chunked and vad modes, from 1 to the server's --max-batch-size.
            beams: beam-search width from 1 (greedy, fastest) to 8; 0 = auto (5 on a CPU, 1 on a GPU).
            url: a public http(s) URL of the recording instead of audio; only on servers started with --allow-urls.
            line_chars: subtitle lines of at most this many characters (0: no limit).
            lines: at most this many lines per subtitle cue (0: no limit).
            cue_words: at most this many words per cue (0: no limit); word times are computed for it.
            word_cues: one subtitle cue per word (karaoke style); word times are computed for it.
            prompt: names and words the speech uses, read by Whisper before every piece (at most 1000 characters).

        Returns:
            transcript: the text.
            segments: [{start, end, text}] in seconds, each with "words" when word timestamps were asked for.
            downloads: the transcript as .srt, .vtt, .txt and .json files.
        """
        if not audio and not (url or "").strip():
            raise InputError("No audio was given; drop, upload or record a file (wav, flac, mp3, ogg, m4a)"
                             + (" or give its URL." if fetcher.enabled else "."))
        model = model or models[0]
        check_model_allowed(TASK, model, settings)
        try:
            layout = SubtitleOptions(max_line_chars=int(line_chars), max_lines=int(lines), max_words=int(cue_words),
                                     word_level=bool(word_cues))
        except ValueError as exc:
            raise InputError(f"Subtitle settings: {exc}.") from None
        with upload_or_url(audio, url, fetcher, files.GRADIO_CACHE) as path:
            return _transcribe(path, model, timestamps, mode, language, task, batch_size, beams, layout, progress,
                               prompt or "")

    def _transcribe(path, model_name, timestamps_, mode_, language_, task_, batch_, beams_, layout, progress,
                    prompt_=""):
        size_mb = Path(path).stat().st_size / 2**20 if Path(path).is_file() else 0.0
        if size_mb > settings.max_file_mb:
            raise InputError(f"The file is {size_mb:.0f} MB; this server accepts up to {settings.max_file_mb:g} MB.")
        # Decoding first: a bad file is refused before any model loads.
        samples = decode_audio(path, RATE, settings.max_audio_seconds, settings.min_audio_seconds)
        # Cues cut at words need the words' times, whatever the transcript shows.
        needs_words = timestamps_ != "none" and (layout.word_level or layout.max_words > 0)
        options = TranscribeOptions(
            timestamps="words" if needs_words else timestamps_, mode=mode_, batch_size=min(int(batch_), max_batch), num_beams=int(beams_) or None,
            language=None if language_ in (None, "", AUTO_LANGUAGE) else language_, task=task_ or "transcribe",
            prompt=prompt_)
        pipe = get_pipeline(registry, TASK, model_name, progress)
        if pipe.feature_extractor.sampling_rate != RATE:
            samples = decode_audio(path, pipe.feature_extractor.sampling_rate, settings.max_audio_seconds,
                                   settings.min_audio_seconds)
        started = time.perf_counter()
        progress((0, None), desc="Transcribing")

        def report(done: float, total: float) -> None:  # seconds of audio, with our own time left
            left = time_left(done, total, time.perf_counter() - started)
            progress((round(done), round(total)), desc="Transcribing" + (f" ({left})" if left else ""),
                     unit="s of audio")

        result = transcribe(pipe, samples, options, progress=report, should_stop=stop_check())
        elapsed = time.perf_counter() - started
        # Written inside Gradio's own cache, which serves them and deletes them with the rest of it.
        folder = tempfile.mkdtemp(prefix="speech-", dir=files.GRADIO_CACHE)
        paths = write_all(result, folder, _file_stem(path), layout)
        if result.note:
            gr.Info(result.note)
        shown = result if timestamps_ == "words" else dataclasses.replace(  # words only where asked for
            result, segments=tuple(dataclasses.replace(seg, words=()) for seg in result.segments))
        return result.text, segments_json(shown), [str(p) for p in paths], (shown, elapsed)

    def show(state):
        # Emptied once shown: Gradio keeps a session's state an hour after it closes. (API sessions never
        # run this step and keep theirs, which is text and times only.)
        if not state:
            return "", [], gr.Dataframe(visible=False), None
        result, elapsed = state
        rows = [[clock(s.start), clock(s.end), s.text] for s in result.segments]
        word_rows = [[clock(w.start), clock(w.end), w.text] for w in result.words]
        return summary(result, elapsed), rows, gr.Dataframe(value=word_rows, visible=bool(word_rows)), None

    def language_visible(model_name: str):
        return gr.Row(visible=language_offered(model_name or ""))

    transcribing = run.click(transcribe_audio, [audio, model, timestamps, mode, language, task, batch, beams, url,
                                                line_chars, lines, cue_words, word_cues, prompt],
                             [text, segments, files, result_state], api_name="transcribe")
    transcribing.then(
        show, result_state, [info, table, words, result_state], api_name="speech_show", api_visibility="private",
        queue=False)
    stop.click(None, cancels=[transcribing], api_name="speech_stop", api_visibility="private")
    model.change(language_visible, model, language_row, api_name="speech_language_options",
                 api_visibility="private", queue=False)
    build_live(registry, settings, model, timestamps, prompt)
    build_many(registry, settings, model, timestamps, language, task, batch, beams, prompt)


def demo(registry, settings, fetcher: URLFetcher | None = None) -> gr.Blocks:
    return standalone(build, registry, settings, "Speech", fetcher=fetcher)
