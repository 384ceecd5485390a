"""Speed levers of the Speech tab's vad path: int8 on a CPU, ended rows leaving the batch, the GPU batch
chosen from free memory, the public decoding switch, and the warm-up behind --preload."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.speech_audio import wer
from engine import speech_speed
from engine.errors import InputError
from engine.speech import SPEECH_INT8_ATTR, TranscribeOptions, decode_audio, transcribe, warm_up
from engine.whisper_batch import DecodeOptions, transcribe_chunks
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "speech_example.flac"
RATE = 16000
GREEDY = {"num_beams": 1}
LARGE_V3 = dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128)


@pytest.fixture(scope="module")
def real():
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(WHISPER_TINY_EN), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def example():
    """The example twice with a pause: 38 s, so the default mode (auto) picks vad."""
    audio = decode_audio(EXAMPLE)
    return np.concatenate([audio, np.zeros(2 * RATE, np.float32), audio])


# --- int8 ---------------------------------------------------------------------------------------

def test_int8_copy_quantizes_the_decoders_linears_once_and_leaves_the_model_alone(tiny_model):
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=tiny_model("whisper_en"), device="cpu",
                    dtype=torch.float32)
    model = pipe.model
    assert speech_speed.int8_applies(model)
    q = speech_speed.int8_model(model)
    assert speech_speed.int8_model(model) is q  # built once per model
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    # The decoder and the output projection in int8; the encoder stays float32 (int8_parts says why).
    assert not any(type(m) is torch.nn.Linear for m in q.model.decoder.modules()) and type(q.proj_out) is \
        DynamicInt8Linear
    assert sum(isinstance(m, DynamicInt8Linear) for m in q.modules()) == sum(
        type(m) is torch.nn.Linear for m in model.model.decoder.modules()) + 1 > 10
    assert not any(isinstance(m, DynamicInt8Linear) for m in q.model.encoder.modules())
    assert isinstance(model.proj_out, torch.nn.Linear) and model.proj_out.weight.dtype == torch.float32
    assert not speech_speed.int8_applies(model.to(torch.float16))


@needs_real_whisper
def test_int8_transcript_of_the_real_model_reads_the_example(real, example):
    fp32 = transcribe(real, example, TranscribeOptions(int8=False))
    int8 = transcribe(real, example, TranscribeOptions(int8=True))
    assert int8.mode == fp32.mode == "vad"
    assert real.model in speech_speed._int8_models  # the quantized copy did the decoding
    assert "pipeline studio" in int8.text.lower() and "subtitles" in int8.text.lower()
    assert wer(fp32.text, int8.text) <= 0.1, (fp32.text, int8.text)
    assert len(int8.segments) >= 6
    starts = sorted(s.start for s in fp32.segments)
    for seg in int8.segments:  # every sentence placed where float32 placed it
        assert min(abs(seg.start - s) for s in starts) <= 0.3


def registry_speech_pipe(tiny_model, **flags):
    """The tiny English Whisper as the registry loads it, with --speech-* settings `flags`."""
    from engine.registry import PipelineRegistry
    from engine.settings import Settings

    settings = Settings.from_env(env={}, device="cpu", offline=True, asr_model=str(tiny_model("whisper_en")), **flags)
    return PipelineRegistry(settings).get("automatic-speech-recognition")


def test_int8_off_never_builds_the_copy_and_the_registry_flag_sets_the_default(tiny_model, monkeypatch):
    built = []
    monkeypatch.setattr(speech_speed, "int8_model", lambda m: built.append(m) or m)
    noise = (np.random.default_rng(0).standard_normal(4 * RATE) * 0.1).astype(np.float32)
    for flag in (False, True):
        pipe = registry_speech_pipe(tiny_model, speech_int8=flag)
        assert getattr(pipe, SPEECH_INT8_ATTR) is flag
        built.clear()
        transcribe_chunks(pipe, [noise], generate_kwargs=GREEDY,
                          options=DecodeOptions(int8=getattr(pipe, SPEECH_INT8_ATTR)))
        assert bool(built) is flag


def test_speech_int8_is_a_flag_on_by_default():
    from engine.cli import build_parser, settings_from_args

    parser = build_parser()
    assert settings_from_args(parser.parse_args([]), env={}).speech_int8 is True
    assert settings_from_args(parser.parse_args(["--no-speech-int8"]), env={}).speech_int8 is False
    assert settings_from_args(parser.parse_args([]), env={"STUDIO_SPEECH_INT8": "0"}).speech_int8 is False
    assert settings_from_args(parser.parse_args(["--speech-int8"]), env={"STUDIO_SPEECH_INT8": "0"}).speech_int8


# --- bfloat16 encoder ----------------------------------------------------------------------------

def test_bf16_is_used_only_where_the_cpu_has_bfloat16_instructions(tmp_path, tiny_model):
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert speech_speed.cpu_has_bf16.__wrapped__(str(with_bf16)) is True
    assert speech_speed.cpu_has_bf16.__wrapped__(str(without)) is False
    assert speech_speed.cpu_has_bf16.__wrapped__(str(tmp_path / "missing")) is False
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model("whisper_en"))
    assert speech_speed.bf16_applies(model) is speech_speed.cpu_has_bf16()
    assert not speech_speed.bf16_applies(model.to(torch.float16))


def encoder_dtypes(model, monkeypatch, has_bf16=True):
    """Records, per encoder pass, the autocast dtype it ran under (False: none); pretends the CPU has it (autocast
    works on any CPU, only slower without the instructions)."""
    seen = []
    monkeypatch.setattr(speech_speed, "cpu_has_bf16", lambda: has_bf16)
    hook = model.get_encoder().conv1.register_forward_hook(  # (engine.whisper_batch.encode runs the layers)
        lambda *_: seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")))
    return seen, hook


@needs_real_whisper
def test_bf16_encoder_transcript_of_the_real_model_reads_the_example(real, example, monkeypatch):
    seen, hook = encoder_dtypes(real.model, monkeypatch)
    try:
        fp32 = transcribe(real, example, TranscribeOptions(int8=False, bf16=False))
        assert seen and not any(seen)
        seen.clear()
        bf16 = transcribe(real, example, TranscribeOptions(int8=False, bf16=True))
        assert seen and all(d == torch.bfloat16 for d in seen)  # every pass under autocast
    finally:
        hook.remove()
    assert "pipeline studio" in bf16.text.lower() and "subtitles" in bf16.text.lower()
    assert wer(fp32.text, bf16.text) <= 0.1, (fp32.text, bf16.text)
    starts = sorted(s.start for s in fp32.segments)
    assert len(bf16.segments) >= 6
    for seg in bf16.segments:
        assert min(abs(seg.start - s) for s in starts) <= 0.3


def test_bf16_follows_the_registry_flag_and_never_runs_without_the_instructions(tiny_model, monkeypatch):
    from engine.speech import SPEECH_BF16_ATTR, _decode_options

    noise = (np.random.default_rng(0).standard_normal(4 * RATE) * 0.1).astype(np.float32)
    for flag in (False, True):
        pipe = registry_speech_pipe(tiny_model, speech_bf16=flag)
        assert getattr(pipe, SPEECH_BF16_ATTR) is flag
        assert _decode_options(pipe, TranscribeOptions()).bf16 is flag
        assert _decode_options(pipe, TranscribeOptions(bf16=not flag)).bf16 is (not flag)
        for has_bf16 in (True, False):
            seen, hook = encoder_dtypes(pipe.model, monkeypatch, has_bf16)
            try:
                transcribe_chunks(pipe, [noise], generate_kwargs={**GREEDY, "max_new_tokens": 4},
                                  options=_decode_options(pipe, TranscribeOptions(int8=False)))
            finally:
                hook.remove()
            assert seen and set(seen) == {torch.bfloat16 if flag and has_bf16 else False}


def test_bf16_cross_attention_keeps_its_keys_and_values_in_bfloat16_and_the_logits_close(tiny_model):
    from transformers import WhisperForConditionalGeneration

    import engine.whisper_batch as wb

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model("whisper_en")).eval()
    encoded = torch.randn(3, model.config.max_source_positions, model.config.d_model)
    tokens = torch.tensor([model.generation_config.decoder_start_token_id] * 3)
    with torch.inference_mode():
        full = wb._StaticDecoder(model, encoded, 8, "sdpa")
        half = wb._StaticDecoder(model, encoded, 8, "sdpa", cross_dtype=torch.bfloat16)
        assert {k.dtype for pair in half.cross for k in pair} == {torch.bfloat16}
        assert {k.dtype for pair in full.cross for k in pair} == {torch.float32}
        a, b = full.step(tokens, torch.tensor(0), 1), half.step(tokens, torch.tensor(0), 1)
    assert b.dtype == torch.float32 and torch.allclose(a, b, atol=0.05 * float(a.abs().max()))


def test_speech_bf16_is_a_flag_on_by_default():
    from engine.cli import build_parser, settings_from_args

    parser = build_parser()
    assert settings_from_args(parser.parse_args([]), env={}).speech_bf16 is True
    assert settings_from_args(parser.parse_args(["--no-speech-bf16"]), env={}).speech_bf16 is False
    assert settings_from_args(parser.parse_args([]), env={"STUDIO_SPEECH_BF16": "0"}).speech_bf16 is False


# --- beams: auto ---------------------------------------------------------------------------------

def test_auto_beams_search_where_the_fast_path_does_it_on_a_cpu():
    from types import SimpleNamespace

    from engine.speech import CPU_BEAMS, auto_beams

    cpu = SimpleNamespace(model=SimpleNamespace(device=torch.device("cpu")))
    gpu = SimpleNamespace(model=SimpleNamespace(device=torch.device("cuda", 0)))
    o = TranscribeOptions()
    assert auto_beams(cpu, o, "vad", 600, 30, "word") == CPU_BEAMS == 5  # aligned segment times
    assert auto_beams(cpu, o, "vad", 600, 30, False) == 5  # no times
    assert auto_beams(cpu, o, "sequential", 20, 30, "word") == 5  # one window
    assert auto_beams(gpu, o, "vad", 600, 30, "word") == 1  # a GPU: greedy under a CUDA graph
    assert auto_beams(cpu, o, "vad", 600, 30, True) == 1  # timestamp tokens: the pipeline's beams are slow
    assert auto_beams(cpu, TranscribeOptions(segment_times="tokens"), "vad", 600, 30, "word") == 1
    assert auto_beams(cpu, o, "chunked", 600, 30, True) == 1
    assert auto_beams(cpu, o, "sequential", 600, 30, True) == 1
    assert auto_beams(cpu, TranscribeOptions(decoding="pipeline"), "vad", 600, 30, "word") == 1


@needs_real_whisper
def test_the_default_options_search_five_beams_on_a_cpu_and_one_when_asked(real, example, monkeypatch):
    import engine.whisper_batch as wb

    widths = []
    beam = wb._beam
    monkeypatch.setattr(wb, "_beam", lambda model, encoded, plan, *a, **k: widths.append(plan.beams)
                        or beam(model, encoded, plan, *a, **k))
    auto = transcribe(real, example, TranscribeOptions())
    assert widths and set(widths) == {5}
    widths.clear()
    greedy = transcribe(real, example, TranscribeOptions(num_beams=1))
    assert not widths
    for t in (auto, greedy):
        assert "pipeline studio" in t.text.lower() and "subtitles" in t.text.lower() and len(t.segments) >= 6
    assert wer(greedy.text, auto.text) <= 0.1, (greedy.text, auto.text)


# --- ended rows leave the batch ----------------------------------------------------------------

@needs_real_whisper
def test_dropping_ended_rows_keeps_every_token(real):
    audio = decode_audio(EXAMPLE)
    # Pieces of very different lengths, so rows end many steps apart.
    chunks = [audio[: int(s * RATE)] for s in (2.5, 17.0, 6.0, 11.0)]
    for timestamps in (False, True):
        kept = transcribe_chunks(real, chunks, batch_size=4, return_timestamps=timestamps, generate_kwargs=GREEDY,
                                 options=DecodeOptions(drop_finished=False))
        dropped = transcribe_chunks(real, chunks, batch_size=4, return_timestamps=timestamps,
                                    generate_kwargs=GREEDY, options=DecodeOptions(drop_finished=True))
        assert dropped == kept
        assert len({len(o["text"]) for o in kept}) == 4


def test_dropping_ended_rows_on_the_tiny_model_matches_the_pipeline(tiny_model):
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=tiny_model("whisper_en"), device="cpu",
                    dtype=torch.float32)
    rng = np.random.default_rng(3)
    chunks = [(rng.standard_normal(int(s * RATE)) * 0.1).astype(np.float32) for s in (1, 7, 3, 12, 2)]
    gk = {"num_beams": 1, "max_new_tokens": 20}
    ref = [o["text"] for o in pipe([{"raw": c, "sampling_rate": RATE} for c in chunks], batch_size=5,
                                   generate_kwargs=gk)]
    got = [o["text"] for o in transcribe_chunks(pipe, chunks, batch_size=5, generate_kwargs=gk)]
    assert got == ref


# --- the batch on a GPU -------------------------------------------------------------------------

def fake_model(device: str, config_kwargs: dict):
    from transformers import WhisperConfig

    param = SimpleNamespace(device=torch.device(device), element_size=lambda: 2, dtype=torch.float16)
    return SimpleNamespace(config=WhisperConfig(**config_kwargs), parameters=lambda: iter([param]))


def test_auto_batch_takes_every_chunk_that_free_gpu_memory_holds(monkeypatch):
    model = fake_model("cuda:0", LARGE_V3)
    per_row = speech_speed.row_bytes(model, 448)
    assert 150e6 < per_row < 1e9  # cross-attention caches of 32 layers dominate: about 245 MB in fp16
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (130 * 2**30, 140 * 2**30))
    assert speech_speed.auto_batch_size(model, 63, floor=8) == 63  # an H200: all 63 chunks at once
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(per_row * 20 / 0.8), 140 * 2**30))
    assert speech_speed.auto_batch_size(model, 63, floor=8) == 20  # what fits
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_row, 140 * 2**30))
    assert speech_speed.auto_batch_size(model, 63, floor=8) == 8  # never below the user's batch
    assert speech_speed.auto_batch_size(model, 5, floor=8) == 5


def test_a_row_counts_the_alignment_weights_word_times_read():
    model = fake_model("cuda:0", LARGE_V3)
    plain = speech_speed.row_bytes(model, 448)
    model.generation_config = SimpleNamespace(alignment_heads=[[30, 1], [31, 2]])
    assert speech_speed.row_bytes(model, 448) - plain == pytest.approx(2 * 448 * 1500 * 4 * 1.5, rel=1e-6)


def test_beams_make_a_row_hold_a_self_attention_cache_and_logits_each():
    model = fake_model("cuda:0", LARGE_V3)
    one, five = speech_speed.row_bytes(model, 448), speech_speed.row_bytes(model, 448, beams=5)
    cfg = model.config
    per_beam = cfg.decoder_layers * 2 * 448 * cfg.d_model * 2 + cfg.vocab_size * 20
    assert five - one == pytest.approx(4 * per_beam * 1.5, rel=1e-6)


def test_auto_batch_on_a_cpu_is_the_users_batch():
    model = fake_model("cpu", LARGE_V3)
    assert speech_speed.auto_batch_size(model, 63, floor=8) == 8
    assert speech_speed.auto_batch_size(model, 3, floor=8) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_batch_on_a_real_gpu_fits_and_decodes(tiny_model):
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=tiny_model("whisper_en"), device="cuda:0",
                    dtype=torch.float16)
    assert speech_speed.auto_batch_size(pipe.model, 40, floor=8) == 40
    chunks = [(np.random.default_rng(i).standard_normal(5 * RATE) * 0.1).astype(np.float32) for i in range(12)]
    out = transcribe_chunks(pipe, chunks, batch_size=12, generate_kwargs={"num_beams": 1, "max_new_tokens": 5})
    assert len(out) == 12


# --- the public switches and the warm-up -------------------------------------------------------

def test_decoding_is_validated():
    assert TranscribeOptions().decoding == "auto" and TranscribeOptions().auto_batch is True
    assert TranscribeOptions().int8 is None
    with pytest.raises(InputError, match="decoding"):
        TranscribeOptions(decoding="ctranslate2")


@needs_real_whisper
def test_decoding_pipeline_switch_gives_the_fast_paths_text(real, example, monkeypatch):
    import engine.whisper_batch as wb

    calls = []
    original = wb._pipeline_path
    monkeypatch.setattr(wb, "_pipeline_path", lambda *a, **k: calls.append(1) or original(*a, **k))
    # decoding="pipeline" reads Whisper's timestamp tokens, so the fast path is compared with them on too.
    fast = transcribe(real, example, TranscribeOptions(int8=False, segment_times="tokens"))
    aligned = transcribe(real, example, TranscribeOptions(int8=False))
    plain = transcribe(real, example, TranscribeOptions(int8=False, timestamps="none"))
    assert not calls
    slow = transcribe(real, example, TranscribeOptions(int8=False, decoding="pipeline"))
    assert calls and slow.text == fast.text
    # Aligned segment times decode without timestamp tokens: the text is the one without times.
    assert aligned.text == plain.text and aligned.segments and not plain.segments


def test_warm_up_builds_the_int8_copy_and_preload_warms_speech(tiny_model, monkeypatch):
    from engine.registry import PipelineRegistry
    from engine.settings import Settings
    import engine.speech as speech

    registry = PipelineRegistry(Settings.from_env(env={}, device="cpu", offline=True, speech_int8=True,
                                                  asr_model=str(tiny_model("whisper_en"))))
    warmed = []
    monkeypatch.setattr(speech, "warm_up", lambda pipe: warmed.append(pipe) or 0.0)
    done = registry.preload(["automatic-speech-recognition"])
    assert len(done) == 1 and warmed == [registry.get("automatic-speech-recognition")]
    monkeypatch.undo()
    pipe = registry.get("automatic-speech-recognition")
    assert warm_up(pipe) > 0
    assert pipe.model in speech_speed._int8_models  # the first request finds the int8 copy ready
