"""The Speech tab's Live part: record, watch the transcript grow, stop and download it.

Gradio streams the microphone in chunks (`.stream`, every STREAM_EVERY_S); each chunk is decoded by
engine.audio.decode_audio like any upload and fed to an engine.live.LiveSession kept in the
visitor's gr.State. The session holds only the audio since its last committed utterance, is capped
at --max-audio-seconds of audio, is emptied when recording stops, and is forgotten when the page
closes (Gradio deletes a closed session's state; `delete_callback` empties it first).
"""

from __future__ import annotations

import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr

from engine.errors import InputError
from engine.live import LiveOptions, LiveSession, LiveStream, read_stream_chunk
from engine.registry import check_model_allowed
from engine.speech import TranscribeOptions
from engine.subtitles import write_all
from ui.common import user_errors
from ui.security import NOT_UPLOADED, is_uploaded
from ui.zerogpu import on_zerogpu

TASK = "automatic-speech-recognition"
STREAM_EVERY_S = 0.5
MAX_CHUNK_S = 30.0  # the page sends STREAM_EVERY_S at a time, more when it held chunks back while busy
LIVE_KINDS = ("seq2seq_whisper", "ctc", "ctc_with_lm")  # models that give text for a piece of audio
ACTIVE_S = 30.0  # a stream that sent audio this recently counts against --max-live-sessions
IDLE_HOURS = 2.0  # a session's state is dropped this long after its last chunk, whatever the page does


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def live_lines(session: LiveSession) -> str:
    """The live view: one '[m:ss.s] text' line per committed segment, then the open tail."""
    lines = [f"[{_clock(s.start)}] {s.text}" for s in session.segments]
    if session.tail:
        lines.append(f"[{_clock(session.offset)}] {session.tail} …")
    return "\n".join(lines)


def live_status(session: LiveSession, stopped: bool = False, backlog: float = 0.0) -> str:
    said = len(session.texts)
    head = "**Stopped.**" if stopped else "**Listening**"
    parts = [f"{head} {_clock(session.received)} recorded", f"{said} utterance{'s' if said != 1 else ''}"]
    if session.received:
        parts.append(f"real-time factor {session.real_time_factor:.2f}")
    if backlog >= 2:
        parts.append(f"{backlog:.0f} s behind")
    text = " · ".join(parts)
    if not stopped and not said and not session.tail and session.received >= 2:
        text += "\n\nNo speech heard yet: speak closer to the microphone, or check that it is the one selected."
    return f"{text}\n\n{session.note}" if session.note else text


def build_live(registry, settings, model: gr.Dropdown, timestamps: gr.Radio, prompt: gr.Textbox) -> None:
    """Components and events of the Live part; `model`, `timestamps` and `prompt` are the tab's own fields."""
    if on_zerogpu():
        # Live decoding runs on worker threads for as long as someone speaks; ZeroGPU lends a GPU only
        # inside one @spaces.GPU call of bounded length, so the model would run without one.
        gr.Markdown("**Live transcription** is not offered on this Space's ZeroGPU hardware (a GPU is lent "
                    "per request there, not for a whole recording): record or upload a file above instead.",
                    elem_id="speech-live-unavailable")
        return
    options = LiveOptions(max_seconds=settings.max_audio_seconds)
    # Model work of every live session runs here: --concurrency transcriptions at once, whatever
    # the number of people recording; the stream handlers themselves only queue audio.
    workers = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="speech-live")
    open_streams: weakref.WeakSet[LiveStream] = weakref.WeakSet()
    with gr.Accordion("Live: transcribe while you speak", open=True, elem_id="speech-live"):
        gr.Markdown("Press **Record** and speak: finished sentences appear with their time from the start "
                    "of the recording; the one you are saying is shown with `…` and may still change. "
                    "**Stop** gives the same downloads as a file. Your browser asks once for the microphone.")
        with gr.Row():
            with gr.Column(scale=1):
                mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath", label="Microphone",
                               elem_id="speech-live-audio")
                status = gr.Markdown(elem_id="speech-live-status")
            with gr.Column(scale=1):
                text = gr.Textbox(label="Live transcript", lines=8, max_lines=20, buttons=["copy"],
                                  elem_id="speech-live-text")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                elem_id="speech-live-files")
    state = gr.State(None, time_to_live=IDLE_HOURS * 3600, delete_callback=lambda live: live and live.close())

    def new_stream(model_name: str | None, timestamps_: str, prompt_: str = "") -> LiveStream:
        model_name = model_name or model.value
        check_model_allowed(TASK, model_name, settings)
        # A page closed without Stop keeps its state until Gradio deletes it: only streams that sent
        # audio in the last ACTIVE_S count, so abandoned ones do not hold the places.
        active = sum(1 for s in open_streams if not s.session.closed and s.idle_s < ACTIVE_S)
        if active >= settings.max_live_sessions:
            raise InputError(f"{settings.max_live_sessions} people are transcribing live on this server "
                             "already (its --max-live-sessions); try again in a minute, or upload a recording.")

        def pipe():
            pipeline = registry.get(TASK, model_name)
            kind = getattr(pipeline, "type", "")
            if kind not in LIVE_KINDS:
                raise InputError(f"{model_name} cannot transcribe live ({kind or 'not a speech model'}); "
                                 "choose a Whisper or CTC (wav2vec2) model.")
            return pipeline

        session = LiveSession(options=options, transcribe_options=TranscribeOptions(
            timestamps=timestamps_ or "segments", prompt=prompt_ or ""))
        stream = LiveStream(session, pipe, workers)
        workers.submit(pipe)  # the model loads (first use) while the visitor starts speaking
        open_streams.add(stream)
        return stream

    def start():
        # Gradio's recorder drops audio until the stream event has started: "Listening" comes with
        # the first chunk the server receives (listen), not with the button.
        return None, "", None, "**Connecting** … start speaking when this says *Listening*."

    @user_errors
    def listen(chunk: str | None, live: LiveStream | None, model_name: str | None = None,
               timestamps_: str = "segments", prompt_: str = ""):
        """Queue one chunk of the microphone's stream; the transcript so far. Internal to the page."""
        try:
            if live is not None and live.session.closed:  # a chunk that came after Stop: the text is final
                return gr.skip(), gr.skip(), gr.skip()
            live = live or new_stream(model_name, timestamps_, prompt_)
            if chunk and not is_uploaded(chunk, mic.GRADIO_CACHE):  # the front door checks this too
                raise gr.Error(NOT_UPLOADED, print_exception=False)
            if chunk:
                live.push(live.chunk(chunk, read_stream_chunk, MAX_CHUNK_S))
        finally:
            if chunk:
                _drop_chunk(chunk, mic.GRADIO_CACHE)
        return live, live_lines(live.session), live_status(live.session, backlog=live.backlog_s)

    @user_errors
    def stop(live: LiveStream | None):
        """Commit what is left, write the downloads, empty the session. Internal to the page."""
        if live is None or live.session.closed:
            return live, gr.skip(), gr.skip(), gr.skip()
        try:
            result = live.finish()
            lines, status_ = live_lines(live.session), live_status(live.session, stopped=True)
        finally:
            live.close()
        folder = tempfile.mkdtemp(prefix="speech-live-", dir=files.GRADIO_CACHE)
        paths = write_all(result, folder, "live")
        return live, lines, [str(p) for p in paths], status_

    mic.start_recording(start, None, [state, text, files, status], api_name="speech_live_start",
                        api_visibility="private", queue=False)
    # concurrency_limit=None: a stream event lasts as long as its recording, and only queues audio.
    mic.stream(listen, [mic, state, model, timestamps, prompt], [state, text, status], stream_every=STREAM_EVERY_S,
               time_limit=int(settings.max_audio_seconds) + 60, concurrency_limit=None, api_name="speech_live",
               api_visibility="private", show_progress="hidden")
    mic.stop_recording(stop, state, [state, text, files, status], api_name="speech_live_stop",
                       api_visibility="private")


def _drop_chunk(path: str, cache: str) -> None:
    """Delete a stream chunk Gradio saved in its cache (a long recording would leave thousands)."""
    try:
        chunk = Path(path).resolve()
        if chunk.is_relative_to(Path(cache).resolve()):
            chunk.unlink(missing_ok=True)
    except OSError:
        pass
