"""engine.whisper_batch: the fast batched Whisper path gives the pipeline's greedy output."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import engine.whisper_batch as wb
from engine.errors import Cancelled
from engine.whisper_batch import (TOKEN_SECONDS, DecodeOptions, fast_path_applies, log_mel, segment_tokens,
                                  transcribe_chunks)
from tests.conftest import WHISPER_TINY_EN

RATE = 16000
GREEDY = {"num_beams": 1}


def asr_pipeline(path):
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(path), device="cpu", dtype=torch.float32)


def reference(pipe, chunks, timestamps, generate_kwargs, batch_size=4):
    return pipe([{"raw": c, "sampling_rate": RATE} for c in chunks], batch_size=batch_size,
                return_timestamps=timestamps, generate_kwargs=generate_kwargs)


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_en(tiny_model):
    return asr_pipeline(tiny_model("whisper_en"))


# --- the pure helper that mirrors what generate keeps of one pass -------------------------------

def test_segment_tokens_keeps_plain_text_and_finishes_the_window():
    assert segment_tokens([5, 6, 7, 50, 50], eos_token_id=50, timestamp_begin=100, frames_left=3000) == ([5, 6, 7], 3000)


def test_segment_tokens_keeps_everything_after_a_single_final_timestamp():
    seq = [100, 5, 6, 130, 130, 7, 8, 190]  # <0.00> a b <0.60><0.60> c d <1.80> (then end of text)
    assert segment_tokens(seq + [50], 50, 100, 3000) == (seq, 3000)


def test_segment_tokens_drops_unfinished_words_and_moves_to_the_last_closed_segment():
    seq = [100, 5, 6, 130, 130, 7, 8, 190, 190, 9, 10]  # ends mid-segment (max tokens reached)
    kept, advance = segment_tokens(seq, 50, 100, 3000, input_stride=2)
    assert kept == seq[:9]
    assert advance == (190 - 100) * 2  # frames up to the last closed segment's end


# --- same output as the pipeline ---------------------------------------------------------------

@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("lengths", [{}, {"min_new_tokens": 12, "max_new_tokens": 12}])
def test_tiny_english_model_matches_the_pipeline(tiny_en, timestamps, lengths):
    chunks = [noise(s, i) for i, s in enumerate((1.0, 7.5, 29.9))]
    kwargs = {**GREEDY, **lengths}
    got = transcribe_chunks(tiny_en, chunks, batch_size=2, return_timestamps=timestamps, generate_kwargs=kwargs)
    assert got == reference(tiny_en, chunks, timestamps, kwargs)
    assert len(got) == len(chunks) and all("text" in g for g in got)


def test_multilingual_model_detects_or_takes_the_language_like_the_pipeline(tiny_model):
    pipe = asr_pipeline(tiny_model("whisper"))
    chunks = [noise(3.0, 1), noise(11.0, 2)]
    for kwargs in (GREEDY, {**GREEDY, "language": "fr", "task": "transcribe"}):
        got = transcribe_chunks(pipe, chunks, batch_size=2, return_timestamps=True, generate_kwargs=kwargs)
        assert got == reference(pipe, chunks, True, kwargs)


needs_speech = pytest.mark.skipif(shutil.which("espeak-ng") is None or not WHISPER_TINY_EN.is_dir(),
                                  reason="needs espeak-ng and ../shared/models/whisper-tiny.en")


def spoken_chunks(first: str, second: str, pause_s: float) -> list[np.ndarray]:
    """Two chunks of espeak speech: `first` alone, then `second`, a pause and `first` again."""
    from bench.speech_audio import speak

    one, two = speak(first), speak(second)
    return [one, np.concatenate([two, np.zeros(int(pause_s * RATE), np.float32), one])]


@needs_speech
def test_real_whisper_reads_speech_like_the_pipeline():
    pipe = asr_pipeline(WHISPER_TINY_EN)
    chunks = spoken_chunks("The quick brown fox jumps over the lazy dog.",
                           "Pipelines make speech recognition easy to use.", 1.0)
    got = transcribe_chunks(pipe, chunks, batch_size=2, return_timestamps=True, generate_kwargs=GREEDY)
    assert got == reference(pipe, chunks, True, GREEDY)
    assert "quick brown fox" in got[0]["text"]
    assert "easy to use" in got[1]["text"] and "lazy" in got[1]["text"]
    starts = [c["timestamp"][0] for c in got[1]["chunks"]]
    assert starts == sorted(starts) and len(starts) >= 2  # two sentences, two segments in order


@needs_speech
def test_word_times_fall_where_each_sentence_was_said_without_timestamp_tokens():
    from tests.test_speech_synth import make_speech

    pipe = asr_pipeline(WHISPER_TINY_EN)
    speech = make_speech(["The quick brown fox jumps over the lazy dog.", "Shall we meet at the station at noon?",
                          "The old bridge over the river was repaired."], pauses=[1.2, 0.6], lead=0.7)
    plain, other = transcribe_chunks(pipe, [speech.audio, speech.audio[: 4 * RATE]], batch_size=2,
                                     generate_kwargs=GREEDY)
    (got,) = transcribe_chunks(pipe, [speech.audio], batch_size=1, return_timestamps="word", generate_kwargs=GREEDY)
    # The same decoding as without times (no timestamp tokens), its words each with a time.
    assert got["text"] == plain["text"] and "over the lazy" in got["text"] and "station" in got["text"]
    words = got["chunks"]
    assert "".join(w["text"] for w in words) == got["text"]
    times = [t for w in words for t in w["timestamp"]]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= len(speech.audio) / RATE
    # Words fall in the sentence that says them, not in the pauses (DTW stretches a word before a pause
    # across it; the app moves times onto the VAD's speech, tests/test_speech.py).
    for word, sentence in (("lazy", 0), ("station", 1), ("bridge", 2), ("river", 2)):
        start, end = next(w["timestamp"] for w in words if word in w["text"])
        assert speech.starts[sentence] <= start < end <= speech.ends[sentence] + 0.1, (word, start, end)
    # A row of a batch is aligned as it would be alone.
    together = transcribe_chunks(pipe, [speech.audio[: 4 * RATE], speech.audio], batch_size=2,
                                 return_timestamps="word", generate_kwargs=GREEDY)
    assert together[1] == got and together[0]["text"] == other["text"]


def test_word_times_need_alignment_heads(tiny_model):
    pipe = asr_pipeline(tiny_model("whisper_en"))
    chunks = [noise(2.0, 3)]
    assert fast_path_applies(pipe, chunks, "word", GREEDY)
    pipe.model.generation_config.alignment_heads = None
    try:
        assert not fast_path_applies(pipe, chunks, "word", GREEDY)
        assert fast_path_applies(pipe, chunks, True, GREEDY)
    finally:
        del pipe


def test_progress_reports_seconds_of_audio_done_after_each_batch(tiny_en):
    seen = []
    transcribe_chunks(tiny_en, [noise(2.0, i) for i in range(5)], batch_size=2,
                      generate_kwargs={**GREEDY, "max_new_tokens": 10},
                      progress=lambda done, total: seen.append((done, total)))
    assert seen == [pytest.approx((4.0, 10.0)), pytest.approx((8.0, 10.0)), pytest.approx((10.0, 10.0))]


@pytest.mark.parametrize("timestamps", [False, True])
def test_progress_moves_inside_one_batch(tiny_en, timestamps):
    # Three 20 s chunks, one batch (the default 8): progress must not wait for the batch to end.
    seen = []
    steps = {**GREEDY, "min_new_tokens": 60, "max_new_tokens": 60}
    transcribe_chunks(tiny_en, [noise(20.0, i) for i in range(3)], batch_size=8, return_timestamps=timestamps,
                      generate_kwargs=steps, progress=lambda done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert all(t == pytest.approx(60.0) for _, t in seen)
    assert done == sorted(done) and done[-1] == pytest.approx(60.0)
    assert len(seen) >= 60 // 16 + 1  # every 16 decoding steps (of each pass), then the batch's end
    if not timestamps:  # guessed from tokens: 16 steps ~ 4.8 s of each chunk
        assert done[:2] == [pytest.approx(3 * 16 * TOKEN_SECONDS), pytest.approx(3 * 32 * TOKEN_SECONDS)]
    assert all(d <= 0.95 * 60 for d in done[:-1])


class CountSteps:
    """Counts _StaticDecoder.step calls (one per token of every row at once) and encoder passes."""

    def __init__(self, monkeypatch, model):
        self.steps = self.encodes = 0
        step = wb._StaticDecoder.step

        def counted(decoder, *args):
            self.steps += 1
            return step(decoder, *args)

        monkeypatch.setattr(wb._StaticDecoder, "step", counted)
        encode = wb.encode

        def encoded(*args):
            self.encodes += 1
            return encode(*args)

        monkeypatch.setattr(wb, "encode", encoded)


def test_cancel_stops_before_the_next_decoding_step_and_runs_no_more_batches(tiny_en, monkeypatch):
    spy = CountSteps(monkeypatch, tiny_en.model)
    stop_at = 25
    with pytest.raises(Cancelled):
        transcribe_chunks(tiny_en, [noise(5.0, i) for i in range(4)], batch_size=2,
                          generate_kwargs={**GREEDY, "min_new_tokens": 100, "max_new_tokens": 100},
                          should_stop=lambda: spy.steps >= stop_at)
    assert spy.steps == stop_at  # not one step after the cancel was seen
    assert spy.encodes == 1  # the second batch never started


def test_cancel_reaches_the_pipeline_path_between_generate_steps(tiny_en):
    calls = [0]
    hook = tiny_en.model.get_decoder().register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        with pytest.raises(Cancelled):
            transcribe_chunks(tiny_en, [noise(5.0, i) for i in range(4)], batch_size=2, return_timestamps=True,
                              generate_kwargs={"num_beams": 2, "min_new_tokens": 100, "max_new_tokens": 100},
                              should_stop=lambda: calls[0] >= 5)
    finally:
        hook.remove()
    assert calls[0] == 5  # beam search stopped at the step where the cancel was seen


# --- what goes through the pipeline instead ------------------------------------------------------

def test_beams_with_timestamp_tokens_and_the_pipelines_default_beams_take_the_pipeline_path(tiny_en):
    chunks = [noise(2.0, 3)]
    assert fast_path_applies(tiny_en, chunks, True, GREEDY)
    # transformers 5's ASR pipeline uses 5 beams unless told otherwise: so must we, and with timestamp
    # tokens that is the pipeline's beam search.
    assert not fast_path_applies(tiny_en, chunks, True, {})
    assert fast_path_applies(tiny_en, chunks, "word", GREEDY)  # word times by alignment (test below)
    assert not fast_path_applies(tiny_en, [noise(31.0, 4)], True, GREEDY)
    beams = {"num_beams": 2, "max_new_tokens": 6}
    assert not fast_path_applies(tiny_en, chunks, True, beams)
    assert fast_path_applies(tiny_en, chunks, False, beams) and fast_path_applies(tiny_en, chunks, "word", beams)
    assert fast_path_applies(tiny_en, chunks, False, {})  # the default 5 beams, searched here
    assert transcribe_chunks(tiny_en, chunks, batch_size=1, return_timestamps=True, generate_kwargs=beams) == \
        reference(tiny_en, chunks, True, beams)


def test_empty_input_gives_no_output(tiny_en):
    assert transcribe_chunks(tiny_en, [], batch_size=4) == []


def test_log_mel_equals_the_feature_extractor(tiny_en):
    fe = tiny_en.feature_extractor
    chunks = [noise(1.5, 5), noise(30.0, 6)]
    expected = fe(chunks, sampling_rate=RATE, return_tensors="pt")["input_features"]
    assert torch.allclose(log_mel(fe, chunks, "cpu"), expected, atol=1e-5)


def test_encode_is_the_encoders_own_forward(tiny_en):
    """engine.whisper_batch.encode re-runs WhisperEncoder.forward's operations with a contiguous residual
    stream: pinned to the forward of the transformers version installed (CPU float32 here; fp16 on a GPU below)."""
    fe, encoder = tiny_en.feature_extractor, tiny_en.model.get_encoder()
    features = log_mel(fe, [noise(3.0, 1), noise(30.0, 2)], "cpu")
    with torch.inference_mode():
        expected = encoder(features).last_hidden_state
        got = wb.encode(encoder, features)
    assert got.shape == expected.shape and got.is_contiguous()
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_encode_is_the_encoders_own_forward_in_half_precision_on_a_gpu(tiny_en):
    encoder = tiny_en.model.get_encoder()
    half = type(encoder)(encoder.config).to("cuda", torch.float16).eval()
    half.load_state_dict(encoder.state_dict())
    features = log_mel(tiny_en.feature_extractor, [noise(3.0, 1), noise(30.0, 2)], "cuda").half()
    with torch.inference_mode():
        expected, got = half(features).last_hidden_state, wb.encode(half, features)
    assert (got - expected).abs().max().item() < 1e-2


def test_fused_projections_and_the_additive_mask_give_the_same_logits(tiny_en):
    """On a GPU a layer's q, k and v projections run as one matmul, so do its cross-attention keys and values,
    and the step's mask is additive; checked here on the CPU against separate projections and a boolean mask."""
    model, dev = tiny_en.model, "cpu"
    encoded = torch.randn(2, model.config.max_source_positions, model.config.d_model)
    tokens = torch.tensor([[1, 5], [2, 7]])
    logits = []
    for fused in (False, True):
        d = wb._StaticDecoder(model, encoded, 16, "sdpa")
        if fused:
            d.qkv = [d._fused(layer.self_attn) for layer in d.dec.layers]
            d.cross = [d._cross(layer.encoder_attn, encoded, None, joint=True) for layer in d.dec.layers]
            assert not d.cross[0][0].is_contiguous()  # read where the one matmul wrote them
        with torch.inference_mode():
            d.prefill(tokens[:, :1])
            logits.append(d.step(tokens[:, 1], torch.tensor(1, device=dev), upto=8, masked=True))
    assert torch.allclose(logits[0], logits[1], atol=1e-4)
    with torch.inference_mode():  # the boolean mask the additive one replaced
        d = wb._StaticDecoder(model, encoded, 16, "sdpa")
        d.prefill(tokens[:, :1])
        cols = d.positions[:8]
        boolean = d._forward(tokens[:, 1:], torch.tensor([1]), (cols <= 1)[None, :], 8)
    assert torch.allclose(boolean, logits[0], atol=1e-5)


def test_single_tokens_decode_as_the_tokenizer_decodes_them():
    """engine.whisper_batch._SingleTokens decodes a batch's tokens through the tokenizers backend in one call:
    the same string as WhisperTokenizer.decode([t], decode_with_timestamps=True) for every text token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(WHISPER_TINY_EN))
    ids = list(range(tokenizer.eos_token_id))
    fast = wb._SingleTokens(tokenizer, [ids])
    assert len(fast._single) == len(ids)
    assert [fast.decode([i], decode_with_timestamps=True) for i in ids] == \
        [tokenizer.decode([i], decode_with_timestamps=True) for i in ids]
    several = [ids[40], ids[1000], tokenizer.eos_token_id]
    assert fast.decode(several, decode_with_timestamps=True) == tokenizer.decode(several, decode_with_timestamps=True)
    row = tokenizer.encode(" Hello there, general Kenobi.", add_special_tokens=False)
    times = [(0.1 * i, 0.1 * i + 0.1) for i in range(len(row))]
    assert wb._to_output(fast, row, "word", 0.02, times) == wb._to_output(tokenizer, row, "word", 0.02, times)


def test_eager_attention_gives_the_same_text(tiny_en):
    chunks = [noise(4.0, 7), noise(9.0, 8)]
    kwargs = {**GREEDY, "max_new_tokens": 10}
    sdpa = transcribe_chunks(tiny_en, chunks, batch_size=2, return_timestamps=True, generate_kwargs=kwargs)
    eager = transcribe_chunks(tiny_en, chunks, batch_size=2, return_timestamps=True, generate_kwargs=kwargs,
                              options=DecodeOptions(attention="eager"))
    assert sdpa == eager


# --- prompts and conditioning on the previous piece ---------------------------------------------

def test_prompted_rows_decode_in_a_batch_as_each_would_alone(tiny_en):
    """The prompt is prefilled in one pass over the static cache: each row as it would be alone."""
    model = tiny_en.model
    plan = wb._Plan.build(model, True, {**GREEDY, "max_new_tokens": 12})
    sot_prev = tiny_en.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    prompt = [sot_prev, 400, 401, 402, 403, 404]
    with torch.inference_mode():
        feats = log_mel(tiny_en.feature_extractor, [noise(3.0, i) for i in range(3)], "cpu")
        encoded = model.get_encoder()(feats).last_hidden_state
        together = wb._greedy(model, encoded, plan, DecodeOptions(), prompt_ids=prompt)
        alone = [wb._greedy(model, encoded[i:i + 1], plan, DecodeOptions(), prompt_ids=prompt)[0] for i in range(3)]
        unprompted = wb._greedy(model, encoded, plan, DecodeOptions())
    assert together == alone
    assert together != unprompted  # the prompt was read


@needs_speech
def test_a_prompt_gives_the_pipelines_output_with_prompt_ids():
    pipe = asr_pipeline(WHISPER_TINY_EN)
    chunks = spoken_chunks("The gardener carried a basket to the harbour.",
                           "My neighbour said that the bakery was warm.", 0.5)
    ids = pipe.tokenizer.get_prompt_ids("Basket, harbour, gardener.", return_tensors="pt")
    for timestamps in (False, True):
        expected = [pipe({"raw": c, "sampling_rate": RATE}, return_timestamps=timestamps,
                         generate_kwargs={**GREEDY, "prompt_ids": ids}) for c in chunks]
        got = transcribe_chunks(pipe, chunks, batch_size=2, return_timestamps=timestamps,
                                generate_kwargs={**GREEDY, "prompt_ids": ids})
        assert got == expected
        plain = transcribe_chunks(pipe, chunks, batch_size=2, return_timestamps=timestamps, generate_kwargs=GREEDY)
        assert got != plain  # "basket" where it heard "mask it" without the prompt



# --- beam search without timestamp tokens ---------------------------------------------------------

def plain_beam_search(model, encoded_row, init, plan, beams):
    """OpenAI Whisper's beam search (patience 1, no length penalty), each step a full decoder pass per beam:
    what the cached, batched search must give."""
    neg = float("-inf")
    live, finished = [([], 0.0)], []
    for n in range(plan.steps):
        candidates = []
        for tokens, score in live:
            ids = torch.tensor([list(init) + tokens])
            hidden = model.model.decoder(input_ids=ids, encoder_hidden_states=encoded_row[None]).last_hidden_state
            logits = model.proj_out(hidden[0, -1]).float()
            logits[list(plan.suppress)] = neg
            if n == 0:
                logits[list(plan.begin_suppress)] = neg
            top = logits.log_softmax(-1).topk(beams + 1)
            candidates += [(score + lp, tokens + [t]) for lp, t in zip(top.values.tolist(), top.indices.tolist())]
        live = []
        for score, tokens in sorted(candidates, key=lambda c: -c[0]):
            if tokens[-1] == plan.eos:
                if len(finished) < beams:
                    finished.append((score, tokens[:-1]))
            else:
                live.append((tokens, score))
                if len(live) == beams:
                    break
        if len(finished) >= beams:
            break
    finished += sorted(((s, t) for t, s in live), key=lambda f: -f[0])[: beams - len(finished)]
    return max(finished, key=lambda f: f[0] / max(1, len(f[1])))[1] + [plan.eos]


@needs_speech
def test_beam_search_gives_the_plain_search_for_every_row_of_a_batch():
    """Rows end at different steps and leave the batch; beams share their row's cross-attention: each row
    must still get exactly what a plain search over full decoder passes gives."""
    pipe = asr_pipeline(WHISPER_TINY_EN)
    model = pipe.model
    chunks = spoken_chunks("The quick brown fox jumps over the lazy dog.",
                           "Pipelines make speech recognition easy to use.", 1.0) + [noise(1.0, 9)]
    plan = wb._Plan.build(model, False, {"num_beams": 4, "max_new_tokens": 40})
    with torch.inference_mode():
        encoded = model.get_encoder()(log_mel(pipe.feature_extractor, chunks, "cpu")).last_hidden_state
        got = wb._beam(model, encoded, plan, DecodeOptions())
        expected = [plain_beam_search(model, encoded[i], plan.init_tokens, plan, 4) for i in range(len(chunks))]
    assert got == expected
    texts = [pipe.tokenizer.decode(row, skip_special_tokens=True) for row in got]
    assert "quick brown fox" in texts[0] and "easy to use" in texts[1] and "lazy dog" in texts[1]
    assert len({len(row) for row in got}) == 3  # they did end at different steps


@needs_speech
def test_beams_read_the_speech_with_word_times_and_a_row_decodes_as_it_would_alone():
    from tests.test_speech_synth import make_speech

    pipe = asr_pipeline(WHISPER_TINY_EN)
    speech = make_speech(["The quick brown fox jumps over the lazy dog.", "Shall we meet at the station at noon?",
                          "The old bridge over the river was repaired."], pauses=[1.2, 0.6], lead=0.7)
    beams = {"num_beams": 5}
    (plain,) = transcribe_chunks(pipe, [speech.audio], batch_size=1, generate_kwargs=beams)
    (got,) = transcribe_chunks(pipe, [speech.audio], batch_size=1, return_timestamps="word", generate_kwargs=beams)
    assert got["text"] == plain["text"] and "over the lazy" in got["text"] and "station" in got["text"]
    for word, sentence in (("lazy", 0), ("station", 1), ("bridge", 2), ("river", 2)):
        start, end = next(w["timestamp"] for w in got["chunks"] if word in w["text"])
        assert speech.starts[sentence] <= start < end <= speech.ends[sentence] + 0.1, (word, start, end)
    together = transcribe_chunks(pipe, [speech.audio[: 4 * RATE], speech.audio], batch_size=2,
                                 return_timestamps="word", generate_kwargs=beams)
    assert together[1] == got


def test_beam_search_is_cancelled_between_steps_and_reports_progress(tiny_en, monkeypatch):
    spy = CountSteps(monkeypatch, tiny_en.model)
    with pytest.raises(Cancelled):
        transcribe_chunks(tiny_en, [noise(5.0, i) for i in range(4)], batch_size=2,
                          generate_kwargs={"num_beams": 3, "min_new_tokens": 100, "max_new_tokens": 100},
                          should_stop=lambda: spy.steps >= 25)
    assert spy.steps == 25 and spy.encodes == 1
    seen = []
    transcribe_chunks(tiny_en, [noise(20.0, i) for i in range(3)], batch_size=8,
                      generate_kwargs={"num_beams": 3, "min_new_tokens": 60, "max_new_tokens": 60},
                      progress=lambda done, total: seen.append(done))
    assert seen[:2] == [pytest.approx(3 * 16 * TOKEN_SECONDS), pytest.approx(3 * 32 * TOKEN_SECONDS)]
    assert seen == sorted(seen) and seen[-1] == pytest.approx(60.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_windows_give_the_tokens_of_step_by_step_decoding(tiny_model):
    """One graph per self-attention window (GRAPH_WINDOWS), captured as the text grows past each: 300
    tokens cross two windows and must decode as the step-by-step path does."""
    pipe = asr_pipeline(tiny_model("whisper_en"))
    pipe.model.to("cuda")
    chunks = [noise(3.0, i) for i in range(3)]
    kwargs = {**GREEDY, "min_new_tokens": 300, "max_new_tokens": 300}
    graphs = transcribe_chunks(pipe, chunks, batch_size=3, generate_kwargs=kwargs)
    eager = transcribe_chunks(pipe, chunks, batch_size=3, generate_kwargs=kwargs,
                              options=DecodeOptions(cuda_graph=False))
    assert graphs == eager


def test_beam_caches_grow_with_the_text_and_give_the_same_tokens(tiny_en, monkeypatch):
    """The rows x beams self-attention caches start at BEAM_CACHE_COLUMNS columns and double as the text
    grows (a visitor's 8 beams x 16 chunks no longer allocate 448 columns each up front)."""
    model = tiny_en.model
    plan = wb._Plan.build(model, False, {"num_beams": 3, "min_new_tokens": 150, "max_new_tokens": 150})
    with torch.inference_mode():
        encoded = model.get_encoder()(log_mel(tiny_en.feature_extractor, [noise(3.0, i) for i in range(2)],
                                              "cpu")).last_hidden_state
        sizes = []
        reserve = wb._StaticDecoder.reserve

        def spy(decoder, columns):
            reserve(decoder, columns)
            sizes.append(decoder.keys.shape[3])

        monkeypatch.setattr(wb._StaticDecoder, "reserve", spy)
        grown = wb._beam(model, encoded, plan, DecodeOptions())
        longest = plan.steps + len(plan.init_tokens)  # 152 columns at most: doubling stops there
        assert sizes[0] == wb.BEAM_CACHE_COLUMNS and sorted(set(sizes)) == [64, 128, longest]
        monkeypatch.setattr(wb, "BEAM_CACHE_COLUMNS", 10_000)  # all columns at once, as before
        whole = wb._beam(model, encoded, plan, DecodeOptions())
    assert grown == whole and all(len(row) == 151 for row in grown)
