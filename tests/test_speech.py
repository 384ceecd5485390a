"""engine.speech: options, timestamp stitching and snapping (pure), and tiny random models end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.registry import PipelineKey, load_pipeline
from engine.speech import (NO_SPEECH, Segment, TranscribeOptions, Word, align_starts, group_words, offers_language,
                           resolve_mode, snap_to_speech, stitch, tidy_times, transcribe)
from tests.test_speech_synth import RATE, SENTENCES, make_speech, needs_espeak

TASK = "automatic-speech-recognition"


# ---------------------------------------------------------------- options and modes

def test_defaults_are_auto_beams_segments_auto():
    o = TranscribeOptions()
    assert (o.timestamps, o.mode, o.num_beams, o.batch_size, o.task, o.language) == (
        "segments", "auto", None, 8, "transcribe", None)
    assert dict(o.generate_kwargs) == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"timestamps": "chars"}, "timestamps 'chars' is not known; choose one of none, segments, words"),
    ({"mode": "fast"}, "mode 'fast' is not known; choose one of auto, sequential, chunked, vad"),
    ({"num_beams": 0}, "beams must be a whole number from 1 to 8"),
    ({"num_beams": True}, "beams must be a whole number from 1 to 8"),
    ({"batch_size": 0}, "batch size must be a whole number of at least 1"),
    ({"task": "summarize"}, "task 'summarize' is not known"),
])
def test_bad_options_say_what_is_accepted(kwargs, message):
    with pytest.raises(InputError, match=message):
        TranscribeOptions(**kwargs)


def test_auto_is_vad_only_past_one_window():
    assert resolve_mode("auto", 30.0, 30.0) == "sequential"
    assert resolve_mode("auto", 30.1, 30.0) == "vad"
    assert resolve_mode("chunked", 300.0, 30.0) == "chunked"


def test_which_models_offer_a_language(tiny_model):
    assert offers_language("openai/whisper-small") and not offers_language("openai/whisper-tiny.en")
    assert not offers_language("facebook/wav2vec2-base-960h")
    assert offers_language(str(tiny_model("whisper"))) and not offers_language(str(tiny_model("whisper_en")))
    assert not offers_language(str(tiny_model("wav2vec2_ctc")))


# ---------------------------------------------------------------- stitching (pure)

def test_stitch_shifts_each_piece_to_absolute_time():
    outputs = [{"text": " A. B.", "chunks": [{"timestamp": (0.0, 2.0), "text": " A."},
                                             {"timestamp": (2.5, None), "text": " B."}]},
               {"text": " C.", "chunks": [{"timestamp": (0.2, 40.0), "text": " C."}]}]
    segs = stitch(outputs, [[(1.0, 29.0)], [(31.0, 50.0)]], duration=60.0, level="segment")
    assert segs == (Segment(1.0, 3.0, "A."), Segment(3.5, 29.0, "B."), Segment(31.2, 50.0, "C."))


def test_stitch_maps_times_in_a_joined_chunk_back_to_each_piece():
    # A chunk joined from speech at 10-13 s and 20-24 s of the source (the 7 s of silence left out):
    # 0-3 s of its audio is 10-13 s, 3-7 s is 20-24 s.
    outputs = [{"chunks": [{"timestamp": (0.5, 2.5), "text": " first"}, {"timestamp": (3.5, 6.0), "text": " second"},
                           {"timestamp": (6.5, None), "text": " last"}]}]
    segs = stitch(outputs, [[(10.0, 13.0), (20.0, 24.0)]], duration=30.0, level="segment")
    assert [(s.start, s.end, s.text) for s in segs] == [(10.5, 12.5, "first"), (20.5, 23.0, "second"),
                                                        (23.5, 24.0, "last")]
    words = [{"chunks": [{"timestamp": (2.0, 2.9), "text": " end."}, {"timestamp": (3.0, 3.4), "text": " Next"}]}]
    segs = stitch(words, [[(10.0, 13.0), (20.0, 24.0)]], duration=30.0, level="word")
    assert [(s.start, s.end, s.text) for s in segs] == [(12.0, 12.9, "end."), (20.0, 20.4, "Next")]


def test_stitch_clamps_to_the_audio_and_keeps_times_non_decreasing():
    outputs = [{"chunks": [{"timestamp": (5.0, 9.0), "text": "late"}, {"timestamp": (4.0, 3.0), "text": "back"},
                           {"timestamp": (8.0, 99.0), "text": "long"}, {"timestamp": (1.0, 2.0), "text": " ... "}]}]
    segs = stitch(outputs, [[(0.0, 20.0)]], duration=10.0, level="segment")
    assert [s.text for s in segs] == ["late", "back", "long"]  # punctuation alone is not a segment
    times = [t for s in segs for t in (s.start, s.end)]
    assert times == sorted(times) and 0.0 <= times[0] and times[-1] <= 10.0
    assert segs[-1].end == 10.0


def test_times_past_a_piece_end_take_the_previous_end():
    outputs = [{"chunks": [{"timestamp": (1.0, 4.0), "text": " one"}, {"timestamp": (30.0, None), "text": " two"}]}]
    segs = stitch(outputs, [[(100.0, 128.0)]], duration=200.0, level="segment")
    assert [(s.start, s.end) for s in segs] == [(101.0, 104.0), (104.0, 128.0)]


def test_whisper_word_pieces_glue_to_the_word_before():
    outputs = [{"chunks": [{"timestamp": (0.0, 0.3), "text": " at"}, {"timestamp": (0.3, 0.5), "text": " seven"},
                           {"timestamp": (0.5, 0.6), "text": " o"}, {"timestamp": (0.6, 0.9), "text": "'clock"},
                           {"timestamp": (0.9, 1.0), "text": "."}, {"timestamp": (3.0, 3.4), "text": " Next"}]}]
    segs = stitch(outputs, [[(10.0, 20.0)]], duration=30.0, level="word")
    assert [s.text for s in segs] == ["at seven o'clock.", "Next"]
    assert segs[0].words[-1] == Word(10.5, 11.0, "o'clock.")


def test_ctc_words_are_joined_with_spaces_and_grouped_at_pauses():
    outputs = [{"chunks": [{"timestamp": (0.0, 0.3), "text": "HELLO"}, {"timestamp": (0.4, 0.7), "text": "WORLD"},
                           {"timestamp": (2.0, 2.5), "text": "AGAIN"}]}]
    segs = stitch(outputs, [[(0.0, 5.0)]], duration=5.0, level="word")
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 0.7, "HELLO WORLD"), (2.0, 2.5, "AGAIN")]


def test_group_words_cuts_after_sentences_and_before_overlong_lines():
    words = [Word(i, i + 0.5, "word") for i in range(30)]
    segs = group_words(words, max_gap=5.0, max_chars=20)
    assert all(len(s.text) <= 20 for s in segs) and sum(len(s.words) for s in segs) == 30
    segs = group_words([Word(0, 1, "Yes."), Word(1, 2, "No?"), Word(2, 3, "maybe")])
    assert [s.text for s in segs] == ["Yes.", "No?", "maybe"]


def test_tidy_times_keeps_words_inside_their_segment():
    seg = Segment(2.0, 3.0, "a b", (Word(1.5, 2.5, "a"), Word(2.4, 3.5, "b")))
    (out,) = tidy_times([seg], duration=10.0)
    assert out.words == (Word(2.0, 2.4, "a"), Word(2.4, 3.0, "b"))


REGIONS = [(0.92, 4.58), (6.33, 9.86), (12.67, 16.48), (20.28, 23.62), (25.82, 29.57)]


def test_align_starts_moves_early_starts_across_pauses_to_where_speech_begins():
    # Whisper-tiny's segment starts on real espeak speech: each takes in the pause before it.
    assert align_starts([0.52, 4.52, 10.52, 16.52, 23.52], REGIONS) == [0, 1, 2, 3, 4]
    # A start in the middle of a sentence (no pause there) stays where it is.
    assert align_starts([0.9, 2.6, 6.3], REGIONS) == [0, None, 1]


def test_snap_moves_segment_times_onto_speech():
    segs = [Segment(0.52, 4.52, "one"), Segment(4.52, 10.52, "two"), Segment(10.52, 16.52, "three")]
    out = snap_to_speech(segs, REGIONS)
    assert [(s.start, s.end) for s in out] == [(0.92, 4.58), (6.33, 9.86), (12.67, 16.48)]


def test_snap_keeps_each_word_in_the_speech_it_overlaps_most():
    seg = Segment(0.5, 10.5, "Hi end. Please", (Word(0.5, 1.2, "Hi"), Word(4.0, 4.5, "end."),
                                                 Word(4.5, 7.0, "Please"), Word(9.5, 10.5, "go")))
    (out,) = snap_to_speech([seg], REGIONS)
    assert out.words == (Word(0.92, 1.2, "Hi"), Word(4.0, 4.5, "end."), Word(6.33, 7.0, "Please"),
                         Word(9.5, 9.86, "go"))
    assert (out.start, out.end) == (0.92, 9.86)


def test_aligned_words_stretched_across_a_pause_still_start_a_new_segment_there():
    # Word alignment gives a word before a pause the pause too ("afternoon" runs until "Shall"), and
    # without punctuation nothing else marks the sentence's end: the VAD's pause must.
    out = {"text": " walk every afternoon Shall we meet", "chunks": [
        {"text": " walk", "timestamp": (0.9, 1.3)}, {"text": " every", "timestamp": (1.3, 1.7)},
        {"text": " afternoon", "timestamp": (1.7, 4.1)}, {"text": " Shall", "timestamp": (4.1, 4.5)},
        {"text": " we", "timestamp": (4.5, 4.7)}, {"text": " meet", "timestamp": (4.7, 5.2)}]}
    segs = stitch([out], [[(0.0, 6.0)]], 6.0, "word", regions=[(0.9, 2.5), (4.0, 5.3)])
    assert [s.text for s in segs] == ["walk every afternoon", "Shall we meet"]
    assert [(s.start, s.end) for s in segs] == [(0.9, 2.5), (4.1, 5.2)]


# ---------------------------------------------------------------- tiny random models

@pytest.fixture(scope="module")
def pipes(tiny_model):
    def load(name):
        return load_pipeline(PipelineKey(TASK, str(tiny_model(name)), None, "cpu", "float32"))
    return {name: load(name) for name in ("wav2vec2_ctc", "whisper", "whisper_en")}


@pytest.fixture(scope="module")
def noise():
    """Loud but not speech: the VAD finds nothing, so model times come through unchanged."""
    return (0.1 * np.random.default_rng(0).standard_normal(6 * RATE)).astype(np.float32)


def test_ctc_word_times_match_the_pipeline_char_times(pipes, noise):
    pipe = pipes["wav2vec2_ctc"]
    chars = pipe(noise.copy(), return_timestamps="char")["chunks"]
    result = transcribe(pipe, noise, TranscribeOptions(timestamps="words", mode="sequential"))
    words = result.words
    assert words and " ".join(w.text for w in words) == result.text == " ".join(result.text.split())
    letters = [c for c in chars if c["text"] != " "]
    i = 0
    for word in words:  # each word starts at its first letter and ends at its last
        first, last = letters[i], letters[i + len(word.text) - 1]
        assert "".join(c["text"] for c in letters[i:i + len(word.text)]) == word.text
        assert (word.start, word.end) == (pytest.approx(first["timestamp"][0], abs=1e-3),
                                          pytest.approx(last["timestamp"][1], abs=1e-3))
        i += len(word.text)
    assert i == len(letters)
    segments_only = transcribe(pipe, noise, TranscribeOptions(timestamps="segments", mode="sequential"))
    assert segments_only.segments and all(not s.words for s in segments_only.segments)
    assert [s.text for s in segments_only.segments] == [s.text for s in result.segments]


def test_ctc_single_language_ignores_language_with_a_note(pipes, noise):
    result = transcribe(pipes["wav2vec2_ctc"], noise, TranscribeOptions(timestamps="none", language="fr"))
    assert result.segments == () and result.text
    assert "single language" in result.note


class GenerateSpy:
    def __init__(self, model):
        self.model, self.calls, self.original = model, [], model.generate

    def __enter__(self):
        def spy(*args, **kwargs):
            self.calls.append(kwargs)
            return self.original(*args, **kwargs)
        self.model.generate = spy
        return self

    def __exit__(self, *exc):
        del self.model.generate  # back to the class's method


@pytest.mark.parametrize("language, task", [("fr", "translate"), (None, "transcribe")])
def test_multilingual_whisper_language_and_task_reach_generate(pipes, noise, language, task):
    pipe = pipes["whisper"]
    with GenerateSpy(pipe.model) as spy:
        # decoding="pipeline": what reaches generate (the fast path takes the same options: test_whisper_batch)
        result = transcribe(pipe, noise, TranscribeOptions(timestamps="segments", language=language, task=task,
                                                           decoding="pipeline"))
    (call,) = spy.calls
    assert call["task"] == task and call.get("language") == language
    assert call["num_beams"] == 1 and call["return_timestamps"] is True
    assert result.mode == "sequential" and result.language == language and result.note is None


def test_generate_kwargs_and_beams_are_passed_on(pipes, noise):
    pipe = pipes["whisper_en"]
    options = TranscribeOptions(timestamps="none", num_beams=2, generate_kwargs={"max_new_tokens": 5},
                                decoding="pipeline")  # (the fast path searches beams itself: test_whisper_batch)
    with GenerateSpy(pipe.model) as spy:
        transcribe(pipe, noise, options)
    assert spy.calls[0]["num_beams"] == 2 and spy.calls[0]["max_new_tokens"] == 5
    assert "return_timestamps" not in spy.calls[0]


def test_english_only_whisper_ignores_language_with_a_note(pipes, noise):
    pipe = pipes["whisper_en"]
    with GenerateSpy(pipe.model) as spy:
        result = transcribe(pipe, noise, TranscribeOptions(language="de", task="translate", decoding="pipeline"))
    assert "language" not in spy.calls[0] and "task" not in spy.calls[0]
    assert result.language == "en" and "English-only" in result.note


def test_silence_gives_an_empty_transcript_with_a_note_and_runs_no_model(pipes):
    pipe = pipes["whisper_en"]
    with GenerateSpy(pipe.model) as spy:
        result = transcribe(pipe, np.zeros(40 * RATE, np.float32))
    assert spy.calls == []
    assert result.text == "" and result.segments == () and NO_SPEECH in result.note
    assert result.duration == 40.0 and result.mode == "vad"


def test_vad_mode_finding_no_speech_says_so(pipes, noise):
    result = transcribe(pipes["whisper_en"], noise, TranscribeOptions(mode="vad"))
    assert result.text == "" and result.note == NO_SPEECH


def test_empty_array_is_an_input_error(pipes):
    with pytest.raises(InputError, match="no samples"):
        transcribe(pipes["whisper_en"], np.zeros(0, np.float32))


@needs_espeak
def test_vad_runs_chunks_in_batches_reports_progress_and_gives_absolute_times(pipes):
    speech = make_speech(SENTENCES[:10], pauses=[2.0, 3.0])
    pipe = pipes["whisper_en"]
    threads = torch.get_num_threads()
    seen = []
    with GenerateSpy(pipe.model) as spy:
        result = transcribe(pipe, speech.audio, TranscribeOptions(timestamps="words", batch_size=2, decoding="pipeline"),
                            progress=lambda done, total: seen.append((done, total)))
    total = sum(c["input_features"].shape[0] for c in spy.calls)
    assert result.mode == "vad" and total >= 2
    assert [c["input_features"].shape[0] for c in spy.calls] == [2] * (total // 2) + [1] * (total % 2)
    # Progress is in seconds of speech: from 0 to all of it, never backwards.
    done, seconds = [d for d, _ in seen], seen[0][1]
    assert {t for _, t in seen} == {seconds} and 0 < seconds <= speech.duration
    assert done[0] == 0 and done == sorted(done) and done[-1] == pytest.approx(seconds)
    assert all(c["return_token_timestamps"] for c in spy.calls)  # word times asked of the model
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= speech.duration
    assert all(s.start <= w.start <= w.end <= s.end for s in result.segments for w in s.words)
    assert torch.get_num_threads() == threads  # silero runs on one thread, then gives the others back
