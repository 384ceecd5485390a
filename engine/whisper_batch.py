"""A fast batched Whisper path for chunks of at most 30 s.

The transformers pipeline decodes each batch through `generate`, whose Whisper
timestamp rules and stopping checks talk to the device every step. Here the greedy
decoder runs one token per step over a preallocated (static) key/value cache, with
the cross-attention keys and values computed once per batch and the logits rules
(suppressed tokens, timestamp pairs, minimum length) done as tensor operations. On a
GPU each step is captured once as a CUDA graph and replayed. Greedy output is the
same as the pipeline's. Beam search without timestamp tokens runs here too (OpenAI
Whisper's and faster-whisper's search, a row's beams sharing its cross-attention); word
times come from the alignment heads. Anything this path does not cover (beams with
timestamp tokens, sampling, non-Whisper models) goes through the pipeline itself. Prompts
(generate's prompt_ids) are handled here too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.audio import ChunkAudio, chunk_samples
from engine.errors import Cancelled

# generate_kwargs this path understands; any other key sends the call through the pipeline.
FAST_KWARGS = frozenset({"max_new_tokens", "min_new_tokens", "language", "task", "num_beams", "do_sample"})
_CHECK_EVERY = 16  # steps between looks at "have all rows ended?" (each look waits for the device)
# A CUDA graph has fixed shapes, so its self-attention reads a fixed number of cache columns under a mask:
# one graph per window, captured when the text first needs it (most 30 s chunks stay within 128 tokens).
GRAPH_WINDOWS = (128, 256)
WARM_STEPS = 2  # real decoding steps before a window's graph is captured (engine.whisper_batch._warm)
# Beam search's self-attention caches (rows x beams of them) grow with the text, this many columns at a time
# at first, instead of being allocated for the longest text at once.
BEAM_CACHE_COLUMNS = 64
# How far a row without timestamps has got is guessed from its tokens: speech runs near 3 a second.
TOKEN_SECONDS = 0.3
_FRAMES_PER_SECOND = 100  # Whisper's log-mel frames are 10 ms apart
UNFINISHED = 0.95  # a chunk still decoding counts at most this share of its length as done

Progress = Callable[[float, float], Any]  # (seconds of audio done, seconds in all)
ShouldStop = Callable[[], bool]


class AudioMeter:
    """Seconds of audio done per chunk, reported as progress(done, total) in seconds of audio.

    A chunk still decoding counts what its timestamps (or, without them, its tokens) reach, at most
    UNFINISHED of its length; it counts in full once its batch is done. Done never goes back.
    """

    def __init__(self, lengths: Sequence[float], progress: Progress | None):
        self.lengths = list(lengths)
        self.total = float(sum(self.lengths))
        self.done = [0.0] * len(self.lengths)
        self.progress = progress

    def reach(self, index: int, seconds: float) -> None:
        cap = self.lengths[index] * UNFINISHED
        self.done[index] = max(self.done[index], min(float(seconds), cap))

    def finish(self, indices: Sequence[int]) -> None:
        for i in indices:
            self.done[i] = self.lengths[i]
        self.report()

    def report(self) -> None:
        if self.progress is not None:
            self.progress(sum(self.done), self.total)


class StepWatch:
    """A logits processor that leaves the scores alone: it raises Cancelled between decoding steps
    once should_stop() says so, and calls on_step(steps) every _CHECK_EVERY steps (for progress)."""

    def __init__(self, should_stop: ShouldStop | None = None, on_step: Callable[[int], Any] | None = None):
        self.should_stop, self.on_step, self.steps = should_stop, on_step, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()
        self.steps += 1
        if self.on_step is not None and self.steps % _CHECK_EVERY == 0:
            self.on_step(self.steps)
        return scores


def check_stop(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


@dataclass(frozen=True)
class DecodeOptions:
    """How the fast path runs; the defaults are the fastest measured (bench/README.md)."""

    cuda_graph: bool = True  # capture the decoder step as a CUDA graph (GPU only)
    attention: str = "sdpa"  # "sdpa" or "eager" (explicit softmax(q k^T) v)
    features_on_device: bool = True  # log-mel on the model's device instead of the CPU
    int8: bool = False  # int8 weights (torch dynamic quantization of nn.Linear; CPU float32 only)
    # The encoder under bfloat16 autocast and the cross-attention keys and values kept in bfloat16
    # (CPUs with bfloat16 instructions only: speech_speed.bf16_applies).
    bf16: bool = False
    drop_finished: bool = True  # without a CUDA graph: rows that ended leave the batch between steps


def transcribe_chunks(pipe, chunks: Sequence[np.ndarray], *, batch_size: int = 8,
                      return_timestamps: bool | str = False, generate_kwargs: dict | None = None,
                      progress: Progress | None = None,
                      options: DecodeOptions = DecodeOptions(),
                      should_stop: ShouldStop | None = None) -> list[dict]:
    """Transcribe 16 kHz mono chunks (each at most 30 s) with a Whisper pipeline.

    Returns one dict per chunk shaped like the ASR pipeline's output: {"text"} plus,
    with timestamps, {"chunks": [{"timestamp": (start, end), "text"}]} in seconds from
    the chunk's start. progress(done, total) is called in seconds of audio, during each batch
    and after it. should_stop() is asked before each batch and each decoding step; once it
    says yes, Cancelled is raised.

    generate_kwargs["prompt_ids"] (generate's form: <|startofprev|> and text tokens) is put before every
    chunk; the tokens are the pipeline's with it (tested).
    """
    generate_kwargs = {**getattr(pipe, "_generate_kwargs", {}), **(generate_kwargs or {})}
    chunks = chunks if isinstance(chunks, ChunkAudio) else list(chunks)  # a ChunkAudio joins a batch at a time
    if not chunks:
        return []
    batch_size = max(1, int(batch_size))
    rate = pipe.feature_extractor.sampling_rate
    meter = AudioMeter([n / rate for n in chunk_samples(chunks)], progress)
    rest = {k: v for k, v in generate_kwargs.items() if k != "prompt_ids"}  # the fast path reads a prompt itself
    if not fast_path_applies(pipe, chunks, return_timestamps, rest):
        return _pipeline_path(pipe, chunks, batch_size, return_timestamps, generate_kwargs, progress,
                              should_stop)
    prompt = [int(t) for t in generate_kwargs.get("prompt_ids", ())]
    generate_kwargs = {"num_beams": _default_num_beams(pipe), **rest}
    model = pipe.model
    if options.int8:
        from engine.speech_speed import int8_applies, int8_model

        model = int8_model(model) if int8_applies(model) else model
    words = return_timestamps == "word"  # no timestamp tokens: one pass per chunk, words by alignment
    plan = _Plan.build(model, bool(return_timestamps) and not words, generate_kwargs)
    heads = alignment_heads(model) if words else ()
    time_precision = pipe.feature_extractor.chunk_length / model.config.max_source_positions
    frame_s = pipe.feature_extractor.hop_length / rate
    out: list[dict] = []
    fe = pipe.feature_extractor
    join_on_device = (options.features_on_device and model.device.type == "cuda" and isinstance(chunks, ChunkAudio)
                      and _plain_features(fe))
    with torch.inference_mode():
        for start in range(0, len(chunks), batch_size):
            check_stop(should_stop)
            span = slice(start, start + batch_size)
            if join_on_device:  # the chunks' pieces joined on the GPU, not on the host
                features = log_mel_of(fe, chunks.waves(span, fe.n_samples, model.device))
                batch_samples = [chunks.samples(i) for i in range(*span.indices(len(chunks)))]
            else:
                batch = chunks[span]
                features = log_mel(fe, batch, model.device if options.features_on_device else "cpu")
                batch_samples = [len(c) for c in batch]

            def reached(rows: list[tuple[int, float]], first: int = start) -> None:
                for row, frames in rows:
                    meter.reach(first + row, frames * frame_s)
                meter.report()

            times: list | None = [] if words else None
            lengths = [-(-n // fe.hop_length) for n in batch_samples]
            rows = _decode_features(model, features.to(model.device, model.dtype), plan, options, should_stop,
                                    reached if progress is not None else None, prompt,
                                    words=heads, lengths=lengths, word_times=times)
            tokenizer = _SingleTokens(pipe.tokenizer, rows) if times is not None else pipe.tokenizer
            for i, ids in enumerate(rows):
                out.append(_to_output(tokenizer, ids, return_timestamps, time_precision,
                                      times[i] if times is not None else None))
            meter.finish(range(start, start + len(batch_samples)))
    return out


def fast_path_applies(pipe, chunks: Sequence[np.ndarray], return_timestamps, generate_kwargs: dict) -> bool:
    """Whether transcribe_chunks can decode these itself (Whisper: greedy, or beams without timestamp tokens;
    word times where the model has alignment heads)."""
    model = getattr(pipe, "model", None)
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "whisper" or getattr(pipe, "feature_extractor", None) is None:
        return False
    if return_timestamps not in (True, False, None, "word"):
        return False
    if return_timestamps == "word" and not alignment_heads(model):
        return False
    if set(generate_kwargs) - FAST_KWARGS:
        return False
    beams = generate_kwargs.get("num_beams", _default_num_beams(pipe))
    if generate_kwargs.get("do_sample", False) or (beams != 1 and return_timestamps not in (False, None, "word")):
        return False  # beams with timestamp tokens: the pipeline's
    n_samples = pipe.feature_extractor.n_samples
    return all(n <= n_samples for n in chunk_samples(chunks))


def alignment_heads(model) -> tuple[tuple[int, int], ...]:
    """The (decoder layer, head) pairs whose cross-attention follows the speech (generation config)."""
    heads = getattr(getattr(model, "generation_config", None), "alignment_heads", None) or ()
    layers, per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    pairs = tuple((int(layer), int(head)) for layer, head in heads)
    return pairs if pairs and all(0 <= l < layers and 0 <= h < per_layer for l, h in pairs) else ()


def _default_num_beams(pipe) -> int:
    """The beams the pipeline would use unasked: the model's own setting, else the pipeline's default (5 in v5)."""
    own = pipe.model.generation_config.to_diff_dict()
    if "num_beams" in own:
        return int(own["num_beams"])
    return int(getattr(pipe, "_generation_defaults", {}).get("num_beams", 1))


def log_mel(feature_extractor, chunks: Sequence[np.ndarray], device: str | torch.device) -> torch.Tensor:
    """Whisper log-mel features of chunks padded to 30 s, computed where `device` says.

    The same arithmetic as WhisperFeatureExtractor's torch path, kept on the device so
    the encoder reads it without a round trip through the host.
    """
    fe = feature_extractor
    if not _plain_features(fe):
        out = fe(list(chunks), sampling_rate=fe.sampling_rate, return_tensors="pt")
        return out["input_features"].to(device)
    waves = torch.zeros(len(chunks), fe.n_samples, dtype=torch.float32)
    for i, chunk in enumerate(chunks):
        chunk = np.asarray(chunk, dtype=np.float32)[: fe.n_samples]
        waves[i, : len(chunk)] = torch.from_numpy(chunk)
    return log_mel_of(fe, waves.to(device, non_blocking=True))


def _plain_features(fe) -> bool:
    """Whether log_mel_of computes this feature extractor's features (no dither, no normalisation)."""
    return not (getattr(fe, "dither", 0.0) or getattr(fe, "do_normalize", False))


def log_mel_of(feature_extractor, waves: torch.Tensor) -> torch.Tensor:
    """log_mel of waves [rows, n_samples] already padded, on their device."""
    fe, device = feature_extractor, waves.device
    window = torch.hann_window(fe.n_fft, device=device)
    stft = torch.stft(waves, fe.n_fft, fe.hop_length, window=window, return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    mel_filters = torch.from_numpy(np.asarray(fe.mel_filters)).to(device, torch.float32)
    log_spec = torch.clamp(mel_filters.T @ magnitudes, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def segment_tokens(tokens: Sequence[int], eos_token_id: int, timestamp_begin: int,
                   frames_left: int, input_stride: int = 2) -> tuple[list[int], int]:
    """What transformers' Whisper generate keeps of one pass over a 30 s window, and how far it moves.

    Returns (tokens kept, feature frames to advance). Everything from the first
    end-of-text on is dropped. When the text has closed segments (two timestamps in a
    row) but does not end on a single timestamp, the words after the last closed
    segment are dropped and the window moves only to that segment's end, so generate
    decodes the rest of the window again; otherwise the whole window is done.
    """
    seq = list(tokens)
    if eos_token_id in seq:
        seq = seq[: seq.index(eos_token_id)]
    is_ts = [t >= timestamp_begin for t in seq]
    pairs = [i + 1 for i in range(len(seq) - 1) if is_ts[i] and is_ts[i + 1]]
    if not pairs or is_ts[-2:] == [False, True]:
        return seq, frames_left
    return seq[: pairs[-1] + 1], (seq[pairs[-1] - 1] - timestamp_begin) * input_stride


@dataclass(frozen=True)
class _Plan:
    """Everything the decoding loop needs that does not change per batch."""

    init_tokens: tuple[int, ...]  # start-of-transcript, language (or None: detect), task, ...
    detect_language: bool
    lang_ids: tuple[int, ...]
    steps: int
    min_new_tokens: int
    eos: int
    pad: int
    timestamps: bool
    timestamp_begin: int
    no_timestamps: int | None
    max_initial_timestamp: int | None
    suppress: tuple[int, ...]
    begin_suppress: tuple[int, ...]
    beams: int = 1  # beam-search width; 1 = greedy

    @classmethod
    def build(cls, model, timestamps: bool, kwargs: dict) -> "_Plan":
        gc = model.generation_config
        cfg = model.config
        eos = gc.eos_token_id if isinstance(gc.eos_token_id, int) else list(gc.eos_token_id)[0]
        pad = gc.pad_token_id if gc.pad_token_id is not None else eos
        no_ts = getattr(gc, "no_timestamps_token_id", None)
        if timestamps and no_ts is None:
            raise ValueError("this Whisper model's generation config has no no_timestamps_token_id; "
                             "timestamps need it")
        init, detect, lang_ids = _init_tokens(gc, cfg, timestamps, kwargs.get("language"), kwargs.get("task"))
        longest = cfg.max_target_positions - len(init)
        max_new = kwargs.get("max_new_tokens")
        if max_new is not None and max_new > longest:
            raise ValueError(f"max_new_tokens={max_new} is more than this model can write after its "
                             f"{len(init)} start tokens; use at most {longest}")
        if max_new is None:  # generate's default: max_length new tokens, as far as positions go
            max_new = min((gc.max_length or longest) + len(init), cfg.max_target_positions, longest)
        steps = max_new
        return cls(
            init_tokens=tuple(init), detect_language=detect, lang_ids=tuple(lang_ids), steps=int(steps),
            min_new_tokens=int(kwargs.get("min_new_tokens") or 0), eos=int(eos), pad=int(pad),
            timestamps=timestamps,
            timestamp_begin=(no_ts + 1) if no_ts is not None else cfg.vocab_size + 1,
            no_timestamps=no_ts, max_initial_timestamp=getattr(gc, "max_initial_timestamp_index", None),
            suppress=tuple(gc.suppress_tokens or ()), begin_suppress=tuple(gc.begin_suppress_tokens or ()),
            beams=max(1, int(kwargs.get("num_beams") or 1)),
        )


def _init_tokens(gc, cfg, timestamps: bool, language, task) -> tuple[list, bool, list[int]]:
    """Start tokens as WhisperGenerationMixin._retrieve_init_tokens builds them (None: detect)."""
    multilingual = getattr(gc, "is_multilingual", True) and hasattr(gc, "lang_to_id")
    if not multilingual and (language or task):
        raise ValueError("language and task can't be set for an English-only Whisper model")
    language = language or getattr(gc, "language", None)
    task = task or getattr(gc, "task", None)
    init: list = [gc.decoder_start_token_id]
    if task is None and language is None:
        forced = getattr(gc, "forced_decoder_ids", None) or getattr(cfg, "forced_decoder_ids", None)
        if forced and forced[0][0] == 1:
            i = 1
            while forced and forced[0][0] == i:
                init.append(forced[0][1])
                forced, i = forced[1:], i + 1
    lang_ids = sorted(gc.lang_to_id.values()) if hasattr(gc, "lang_to_id") else []
    detect = False
    if language is not None:
        lang_id = _language_id(gc, language)
        init[1:2] = [lang_id]
    elif multilingual and (len(init) <= 1 or init[1] is None):
        detect = True
        init[1:2] = [None]
    task_ids = getattr(gc, "task_to_id", {})
    if task is not None:
        if task not in task_ids:
            raise ValueError(f"task {task!r} is not supported; use one of {', '.join(task_ids)}")
        if any(t in task_ids.values() for t in init):
            init = [task_ids[task] if t in task_ids.values() else t for t in init]
        else:
            init.append(task_ids[task])
    elif language is not None and task_ids and not any(t in task_ids.values() for t in init):
        init.append(task_ids["transcribe"])
    no_ts = getattr(gc, "no_timestamps_token_id", None)
    if not timestamps and no_ts is not None and init[-1] != no_ts:
        init.append(no_ts)
    elif timestamps and init[-1] == no_ts:
        init = init[:-1]
    if not detect:
        init = [t for t in init if t is not None]
    return init, detect, lang_ids


def _language_id(gc, language: str) -> int:
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    name = language.lower()
    if name in gc.lang_to_id:
        token = name
    elif name in TO_LANGUAGE_CODE:
        token = f"<|{TO_LANGUAGE_CODE[name]}|>"
    else:
        token = f"<|{name}|>"
    if token not in gc.lang_to_id:
        raise ValueError(f"language {language!r} is not supported by this model; "
                         f"use one of {', '.join(sorted(TO_LANGUAGE_CODE))}")
    return gc.lang_to_id[token]


def encode(encoder, features: torch.Tensor) -> torch.Tensor:
    """WhisperEncoder's last_hidden_state for log-mel `features`, the same operations in the same order with the
    residual stream kept contiguous: transformers' forward keeps it in the convolutions' transposed layout, so
    every residual add and layer norm of every layer reads strided memory, and copies queries, keys, values and
    attention outputs once more (about a third of the encoder's time on an H200: bench/README.md section 4).
    tests/test_whisper_batch.py pins it to the encoder's own forward."""
    x = F.gelu(encoder.conv1(features))
    x = F.gelu(encoder.conv2(x)).transpose(1, 2)
    b, t, dim = x.shape
    h = torch.add(x, encoder.embed_positions.weight[:t])
    if not h.is_contiguous():
        h = h.contiguous()
    clamp = torch.finfo(h.dtype).max - 1000 if h.dtype == torch.float16 else None
    for layer in encoder.layers:
        sa = layer.self_attn
        heads = sa.num_heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, heads, -1).transpose(1, 2)

        x = layer.self_attn_layer_norm(h)
        a = F.scaled_dot_product_attention(split(sa.q_proj(x) * sa.scaling), split(sa.k_proj(x)),
                                           split(sa.v_proj(x)), scale=1.0)
        h = h + sa.out_proj(a.transpose(1, 2).reshape(b, t, dim))
        x = layer.final_layer_norm(h)
        h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        if clamp is not None:
            h = h.clamp_(-clamp, clamp)
    return encoder.layer_norm(h)


class _StaticDecoder:
    """One Whisper decoder step over preallocated self-attention and cross-attention caches."""

    def __init__(self, model, encoded: torch.Tensor, max_len: int, attention: str,
                 cross: list[tuple[torch.Tensor, torch.Tensor]] | None = None, cross_dtype: torch.dtype | None = None):
        """cross_dtype: the cross-attention keys and values stored in it (bfloat16 on a CPU halves the bytes
        every step reads; attention then runs in it), else in the encoder's dtype."""
        self.model = model
        self.dec = model.get_decoder()
        cfg = model.config
        self.batch = encoded.shape[0]
        self.heads = cfg.decoder_attention_heads
        self.dim = cfg.d_model
        self.head_dim = self.dim // self.heads
        self.attention = attention
        self.cross = cross or [self._cross(layer.encoder_attn, encoded, cross_dtype) for layer in self.dec.layers]
        self.max_len = max_len
        shape = (len(self.dec.layers), self.batch, self.heads, max_len, self.head_dim)
        self.keys = encoded.new_zeros(shape)
        self.values = encoded.new_zeros(shape)
        self.positions = torch.arange(max_len, device=encoded.device)
        self.scale = float(getattr(self.dec, "embed_scale", 1.0) or 1.0)
        self.group = 1  # decoder rows per encoded row (beams): they share its cross-attention keys and values
        # On a GPU each layer's query, key and value projections run as one matmul (a step's matmuls are small
        # enough that each one's launch and tail cost more than its arithmetic: bench/README.md section 4).
        self.qkv = [self._fused(layer.self_attn) for layer in self.dec.layers] if encoded.is_cuda else []
        if not all(self.qkv):
            self.qkv = []

    def expand(self, group: int, length: int) -> None:
        """Give every row `group` rows of its own self-attention cache (beams; its first `length` columns
        copied, room for BEAM_CACHE_COLUMNS, the rest unwritten: beam steps read only the columns written),
        sharing its cross-attention. reserve() makes more room."""
        columns = min(self.max_len, max(length + 1, BEAM_CACHE_COLUMNS))
        self.keep(torch.arange(self.batch, device=self.keys.device).repeat_interleave(group), length,
                  columns=columns)
        self.group *= group

    def reserve(self, columns: int) -> None:
        """Room for at least `columns` self-attention cache columns (doubling, up to max_len)."""
        have = self.keys.shape[3]
        if columns <= have:
            return
        size = min(self.max_len, max(columns, 2 * have))
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_empty((*old.shape[:3], size, old.shape[4]))
            new[:, :, :, :have] = old
            setattr(self, name, new)

    def keep(self, sources: torch.Tensor, length: int, rows: torch.Tensor | None = None,
             columns: int | None = None) -> None:
        """Beam search's reorder: decoder row r goes on from row sources[r]'s first `length` cache columns;
        with `rows` (encoded rows to keep, in order), the cross-attention keeps only those. columns: the new
        caches' room (default: as now)."""
        if rows is not None:
            self.cross = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cross]
        if rows is not None or sources.numel() != self.batch or columns is not None:
            def gathered(cache: torch.Tensor) -> torch.Tensor:  # new caches, the used columns copied
                room = cache.shape[3] if columns is None else columns
                new = cache.new_empty((cache.shape[0], sources.numel(), cache.shape[2], room, cache.shape[4]))
                new[:, :, :, :length] = cache[:, sources, :, :length]  # read up to `length` only
                return new

            self.keys, self.values = gathered(self.keys), gathered(self.values)
            self.batch = int(sources.numel())
            return
        moved = (sources != torch.arange(self.batch, device=sources.device)).nonzero()[:, 0]
        if moved.numel():  # only the rows that go on from another row's cache are copied
            for cache in (self.keys, self.values):
                cache[:, moved, :, :length] = cache[:, sources[moved], :, :length]

    @staticmethod
    def _joined(linears) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One weight and bias for linear layers that read the same input (plain nn.Linear only; a missing bias
        as zeros), else None."""
        if not all(type(p) is torch.nn.Linear for p in linears):
            return None
        return (torch.cat([p.weight for p in linears]),
                torch.cat([p.bias if p.bias is not None else p.weight.new_zeros(p.out_features) for p in linears]))

    def _fused(self, sa) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One weight and bias for sa's q, k and v projections, else None."""
        return self._joined((sa.q_proj, sa.k_proj, sa.v_proj))

    def _cross(self, attn, encoded: torch.Tensor, dtype: torch.dtype | None,
               joint: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's cross-attention keys and values [batch, heads, frames, head_dim]. joint (default: on a
        GPU, plain nn.Linear projections): both from one matmul, read where it wrote them (strided views),
        instead of two matmuls each copied into the heads-first layout (the same step time on an H200,
        bench/gpu_step_profile.py's crossbshd, without copying 14 GB for 57 chunks of a large model)."""
        if joint is None:
            joint = encoded.is_cuda and dtype in (None, encoded.dtype)
        weights = self._joined((attn.k_proj, attn.v_proj)) if joint else None
        if weights is None:
            return (self._split(attn.k_proj(encoded)).to(dtype or encoded.dtype),
                    self._split(attn.v_proj(encoded)).to(dtype or encoded.dtype))
        both = F.linear(encoded, *weights).view(encoded.shape[0], encoded.shape[1], 2, self.heads, self.head_dim)
        return both[:, :, 0].transpose(1, 2), both[:, :, 1].transpose(1, 2)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.heads, self.head_dim).transpose(1, 2).contiguous()

    def _attend(self, q, k, v, mask=None):
        if self.attention == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5
        if mask is not None:
            scores = scores + mask if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ v

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, upto: int | None = None,
             masked: bool = False) -> torch.Tensor:
        """Logits (float32) for the next token after `tokens` at cache column `pos` (a 0-d tensor).

        Self-attention reads cache columns [0, upto) (all without upto). Unmasked, upto must be pos + 1
        (known on the host): no mask, the fewest bytes read. A CUDA graph's fixed shapes need a fixed
        upto, the columns past pos masked off."""
        at = pos.view(1)
        if upto is not None and not masked:
            return self._forward(tokens[:, None], at, None, upto)
        cols = self.positions if upto is None else self.positions[:upto]
        # An additive mask, made once for all layers (a boolean one is turned into this by every layer's sdpa).
        zero = self.keys.new_zeros(())
        return self._forward(tokens[:, None], at, torch.where(cols <= pos, zero, zero - float("inf"))[None, :],
                             upto)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run tokens [batch, n] (columns 0..n-1) in one pass; logits (float32) after the last one."""
        n = tokens.shape[1]
        cols = self.positions[:n]
        return self._forward(tokens, cols, cols[:, None] >= cols[None, :], n)

    def cross_weights(self, tokens: torch.Tensor, heads: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Cross-attention weights [batch, len(heads), n, frames] of the (layer, head) pairs `heads`
        while reading tokens [batch, n] (columns 0..n-1), each row attending to the tokens before it."""
        n = tokens.shape[1]
        cols = self.positions[:n]
        found: dict[tuple[int, int], torch.Tensor] = {}
        self._forward(tokens, cols, cols[:, None] >= cols[None, :], n, heads=tuple(heads), found=found)
        return torch.stack([found[h] for h in heads], dim=1)

    def _forward(self, tokens: torch.Tensor, cols: torch.Tensor, mask: torch.Tensor,
                 upto: int | None = None, heads: tuple[tuple[int, int], ...] = (),
                 found: dict | None = None) -> torch.Tensor:
        """tokens [b, t] at positions (cache columns) `cols`; attention over columns [0, upto or all).
        With `heads`, the softmax weights of those (layer, head) cross-attentions go into `found`."""
        dec, b, t = self.dec, self.batch, tokens.shape[1]
        h = dec.embed_tokens(tokens) * self.scale + dec.embed_positions.weight.index_select(0, cols)
        for i, layer in enumerate(dec.layers):
            sa = layer.self_attn
            x = layer.self_attn_layer_norm(h)
            if self.qkv:
                q, k, v = (y.transpose(1, 2) for y in
                           F.linear(x, *self.qkv[i]).view(b, t, 3, self.heads, self.head_dim).unbind(2))
            else:
                q, k, v = (p(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                           for p in (sa.q_proj, sa.k_proj, sa.v_proj))
            self.keys[i].index_copy_(2, cols, k)
            self.values[i].index_copy_(2, cols, v)
            keys, values = (self.keys[i], self.values[i]) if upto is None else \
                (self.keys[i][:, :, :upto], self.values[i][:, :, :upto])
            a = self._attend(q, keys, values, mask)
            h = h + sa.out_proj(a.transpose(1, 2).reshape(b, t, self.dim))
            ca = layer.encoder_attn
            x = layer.encoder_attn_layer_norm(h)
            q = ca.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            keys, values = self.cross[i]
            if self.group > 1:  # a row's beams are more queries against its one set of keys and values
                g = self.group
                grouped = q.reshape(b // g, g, self.heads, t, self.head_dim).transpose(1, 2)
                a = self._attend(grouped.reshape(b // g, self.heads, g * t, self.head_dim).to(keys.dtype), keys, values)
                a = a.view(b // g, self.heads, g, t, self.head_dim).transpose(1, 2).reshape(b, self.heads, t,
                                                                                          self.head_dim)
            else:
                a = self._attend(q.to(keys.dtype), keys, values)
            a = a.to(h.dtype)
            for layer_head in heads:
                if layer_head[0] == i and found is not None:
                    k = self.cross[i][0][:, layer_head[1]]
                    found[layer_head] = ((q[:, layer_head[1]].float() @ k.float().transpose(-1, -2))
                                         * self.head_dim ** -0.5).softmax(dim=-1)
            if heads and len(found or ()) == len(set(heads)):
                return h  # every weight asked for is there: the layers above cannot change them
            h = h + ca.out_proj(a.transpose(1, 2).reshape(b, t, self.dim))
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        h = dec.layer_norm(h[:, -1])
        return self.model.proj_out(h).float()


class _Loop:
    """Greedy decoding state on the device, advanced one token per step()."""

    def __init__(self, decoder: _StaticDecoder, plan: _Plan, first_pos: int, last_prompt: torch.Tensor):
        dev = last_prompt.device
        self.decoder, self.plan = decoder, plan
        b = last_prompt.shape[0]
        vocab = decoder.model.config.vocab_size
        ids = torch.arange(vocab, device=dev)
        self.ids = ids
        self.suppress = torch.isin(ids, torch.tensor(plan.suppress or [-1], device=dev))
        self.begin_suppress = torch.isin(ids, torch.tensor(plan.begin_suppress or [-1], device=dev))
        self.is_eos = ids == plan.eos
        self.token = last_prompt.clone()
        self.pos = torch.tensor(first_pos, device=dev)
        self.n = torch.tensor(0, device=dev)
        self.finished = torch.zeros(b, dtype=torch.bool, device=dev)
        self.last_ts = torch.zeros(b, dtype=torch.bool, device=dev)
        self.penult_ts = torch.ones(b, dtype=torch.bool, device=dev)
        self.ts_last = torch.full((b,), -1, dtype=torch.long, device=dev)
        self.out = torch.full((b, plan.steps), plan.pad, dtype=torch.long, device=dev)
        tb = plan.timestamp_begin
        self.text = ids < tb
        self.ts_region = ids >= tb
        self.before_eos = ids < plan.eos
        self.no_ts = ids == (plan.no_timestamps if plan.no_timestamps is not None else -1)
        late = ids > tb + plan.max_initial_timestamp if plan.max_initial_timestamp is not None else torch.zeros_like(ids, dtype=torch.bool)
        self.initial_forbidden = self.text | late

    def state(self) -> list[torch.Tensor]:
        return [self.token, self.pos, self.n, self.finished, self.last_ts, self.penult_ts, self.ts_last]

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Go on with the rows `keep` (indices) only: the other rows' state and caches are dropped."""
        d = self.decoder
        d.cross = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in d.cross]
        d.keys, d.values = d.keys.index_select(1, keep), d.values.index_select(1, keep)
        d.batch = int(keep.numel())
        for name in ("token", "finished", "last_ts", "penult_ts", "ts_last", "out"):
            setattr(self, name, getattr(self, name).index_select(0, keep))

    def step(self, upto: int | None = None, masked: bool = True) -> None:
        """One greedy token per row; upto, masked: as _StaticDecoder.step's (default: the whole cache)."""
        p, neg = self.plan, float("-inf")
        logits = self.decoder.step(self.token, self.pos, upto, masked)
        first = self.n == 0
        forbid = self.suppress | (self.begin_suppress & first)
        if p.min_new_tokens:
            forbid = forbid | (self.is_eos & (self.n < p.min_new_tokens))
        forbid = forbid.expand_as(logits)
        if p.timestamps:
            pair_open = (self.last_ts & ~self.penult_ts)[:, None]
            pair_done = (self.last_ts & self.penult_ts)[:, None]
            floor = torch.where(self.ts_last >= 0,
                                torch.where(self.last_ts & ~self.penult_ts, self.ts_last, self.ts_last + 1),
                                torch.full_like(self.ts_last, p.timestamp_begin))
            forbid = (forbid | self.no_ts | (pair_done & self.ts_region) | (pair_open & self.before_eos)
                      | (self.ts_region & (self.ids < floor[:, None])) | (self.initial_forbidden & first))
            logits = logits.masked_fill(forbid, neg)
            logprobs = logits.log_softmax(dim=-1)
            ts_mass = logprobs[:, p.timestamp_begin:].logsumexp(dim=-1)
            best_text = logprobs[:, : p.timestamp_begin].max(dim=-1).values
            logits = logits.masked_fill((ts_mass > best_text)[:, None] & self.text, neg)
        else:
            logits = logits.masked_fill(forbid, neg)
        nxt = torch.where(self.finished, torch.full_like(self.token, p.pad), logits.argmax(dim=-1))
        self.out.index_copy_(1, self.n.view(1), nxt[:, None])
        self.finished |= nxt == p.eos
        is_ts = nxt >= p.timestamp_begin
        self.penult_ts.copy_(first | self.last_ts)
        self.last_ts.copy_(is_ts)
        self.ts_last.copy_(torch.where(is_ts, nxt, self.ts_last))
        self.token.copy_(nxt)
        self.pos += 1
        self.n += 1


def _decode_features(model, features: torch.Tensor, plan: _Plan, options: DecodeOptions,
                     should_stop: ShouldStop | None = None,
                     reached: Callable[[list[tuple[int, float]]], Any] | None = None,
                     prompt: Sequence[int] = (), words: Sequence[tuple[int, int]] = (),
                     lengths: Sequence[int] = (), word_times: list | None = None) -> list[list[int]]:
    """Token ids per row, running more passes over a window where generate would (see segment_tokens).

    prompt (generate's prompt_ids: <|startofprev|> and text) comes before the first pass over each window,
    cut to its last tokens as generate cuts it; the further passes over what is left of a window have
    none (generate's prompt_condition_type="first-segment").
    reached([(row, frames)]), when given, hears every _CHECK_EVERY steps how far into its audio
    each row's decoding has got, in feature frames.
    words (alignment heads), with plan.timestamps off: one pass per window, and word_times receives per row
    the (start, end) seconds of its text tokens (engine.whisper_align); lengths: each row's feature frames."""
    frames = features.shape[-1]
    encoder = model.get_encoder()
    if options.bf16:
        from engine.speech_speed import bf16_applies

        options = replace(options, bf16=bf16_applies(model))  # what _beam's decoder reads too
    stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
    seek = [0] * features.shape[0]
    kept: list[list[int]] = [[] for _ in seek]
    active = list(range(len(seek)))
    while active:
        if all(seek[i] == 0 for i in active):
            window = features if len(active) == len(seek) else features[active]
        else:
            window = torch.stack([F.pad(features[i, :, seek[i]:], (0, seek[i])) for i in active])
        check_stop(should_stop)
        watch = None
        if reached is not None:
            def watch(at: list[float], rows: list[int] = active) -> None:
                reached([(i, seek[i] + frames) for i, frames in zip(rows, at)])
        align = None
        if words and not plan.timestamps:
            align = (words, [max(1, (lengths[i] if lengths else frames) // stride) for i in active], word_times)
        search = _beam if plan.beams > 1 and not plan.timestamps else _greedy
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options.bf16):  # matmuls, convolutions in bf16
            encoded = encode(encoder, window).to(features.dtype)
        rows = search(model, encoded, plan, options, should_stop, watch, stride,
                       prompt if all(seek[i] == 0 for i in active) else (), align)
        still = []
        for i, row in zip(active, rows):
            ids, advance = segment_tokens(row, plan.eos, plan.timestamp_begin, frames - seek[i], stride)
            kept[i] += ids
            seek[i] += advance
            if advance > 0 and seek[i] < frames:
                still.append(i)
        active = still
    return kept


def _start(model, encoded: torch.Tensor, plan: _Plan, options: DecodeOptions, prompt_ids: Sequence[int],
           cross_dtype: torch.dtype | None = None) -> tuple["_StaticDecoder", torch.Tensor, int, int]:
    """A decoder over `encoded` that has read every start token but the last (which the first step feeds):
    (decoder, the start tokens per row [batch, prefix] with any detected language filled in, prefix, steps).
    cross_dtype: as _StaticDecoder's."""
    dev = encoded.device
    b = encoded.shape[0]
    init = list(plan.init_tokens)
    room = model.config.max_target_positions // 2 - 1
    before = [int(prompt_ids[0]), *map(int, prompt_ids[1:][-room:])] if len(prompt_ids) else []
    prefix = len(before) + len(init)
    steps = min(plan.steps, model.config.max_target_positions - prefix)
    decoder = _StaticDecoder(model, encoded, prefix + steps, options.attention, cross_dtype=cross_dtype)
    prompt = torch.tensor([before + [t if t is not None else plan.pad for t in init]] * b, device=dev)
    detect = len(before) + init.index(None) if None in init else None
    # Everything before the first unknown token (a language to detect) or before the last one, in one pass.
    ready = detect if detect is not None else prefix - 1
    logits = decoder.prefill(prompt[:, :ready]) if ready > 0 else None
    for i in range(ready, prefix):
        if i == detect:  # language detection: the likeliest language token per row
            allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=dev)
            allowed[list(plan.lang_ids)] = True
            prompt[:, i] = logits.masked_fill(~allowed, float("-inf")).argmax(dim=-1)
        if i < prefix - 1:
            logits = decoder.step(prompt[:, i], torch.tensor(i, device=dev))
    return decoder, prompt, prefix, steps


def _greedy(model, encoded: torch.Tensor, plan: _Plan, options: DecodeOptions,
            should_stop: ShouldStop | None = None, watch: Callable[[list[float]], Any] | None = None,
            stride: int = 2, prompt_ids: Sequence[int] = (),
            align: tuple[Sequence[tuple[int, int]], Sequence[int], list] | None = None) -> list[list[int]]:
    """Generated token ids per row (after the start tokens), pad-filled after end of text.

    prompt_ids: tokens put before the start tokens of every row (generate's prompt_ids: <|startofprev|> and
    text; its last max_target_positions // 2 - 1 text tokens are kept, as generate keeps them).
    should_stop() is asked before every step (a host-side call: nothing waits for the device);
    watch(frames reached per row) is called every _CHECK_EVERY steps, where the loop looks anyway.
    align = (alignment heads, encoder frames of real audio per row, a list): the list receives per row
    the (start, end) seconds of each text token, from the cross-attention of one more decoder pass."""
    decoder, prompt, prefix, steps = _start(model, encoded, plan, options, prompt_ids)
    dev, b = encoded.device, encoded.shape[0]
    cross = decoder.cross  # dropping ended rows replaces the list; the alignment pass reads every row's
    loop = _Loop(decoder, replace(plan, steps=steps), prefix - 1, prompt[:, -1])
    graphs: dict[int, Callable[[], None]] = {}
    windows = sorted({min(w, decoder.max_len) for w in GRAPH_WINDOWS} | {decoder.max_len})
    use_graph = options.cuda_graph and dev.type == "cuda"

    def run(done: int) -> int:
        """Step `done` (self-attention over the prefix + done columns written so far); the steps it took: where a
        CUDA graph is captured, the WARM_STEPS before it."""
        nonlocal use_graph
        need = prefix + done
        if use_graph:
            fit = min((w for w in graphs if w >= need), default=None)
            if fit is not None:
                graphs[fit]()
                return 1
            ahead = next((w for w in windows if w >= need + WARM_STEPS), None)
            if ahead is not None and done + WARM_STEPS < steps:  # the graph has steps left to replay
                _warm(loop, ahead)
                try:
                    graphs[ahead] = _capture(loop, ahead)
                except RuntimeError as exc:  # a kernel that cannot be captured: decode without graphs
                    warnings.warn(f"CUDA graph capture failed, decoding step by step: {exc}", RuntimeWarning)
                    use_graph = False
                return WARM_STEPS
            loop.step(next(w for w in windows if w >= need))
            return 1
        loop.step(need, masked=False)
        return 1

    check_stop(should_stop)
    taken = run(0)
    frames = encoded.shape[1] * stride
    # Without a CUDA graph (fixed shapes), rows that ended leave the batch: on a CPU each row costs its
    # share of every step. Rows are independent, so the tokens are the same (int8: within rounding).
    drop = not use_graph and options.drop_finished and b > 1
    done_out = torch.full_like(loop.out, plan.pad) if drop else loop.out
    rows = torch.arange(b, device=dev)
    reached = [0.0] * b  # per original row, for watch
    looked = 0  # steps taken at the last look
    while True:
        if taken // _CHECK_EVERY > looked // _CHECK_EVERY and taken < steps:
            looked = taken
            if watch is not None:
                for row, at in zip(rows.tolist(), _frames_reached(loop, plan, frames, stride)):
                    reached[row] = at
                watch(list(reached))
            if bool(loop.finished.all()):
                break
            if drop and bool(loop.finished.any()):
                gone = loop.finished.nonzero()[:, 0]
                done_out[rows[gone]] = loop.out[gone]
                for row in rows[gone].tolist():
                    reached[row] = float(frames)
                keep = (~loop.finished).nonzero()[:, 0]
                rows = rows[keep]
                loop.keep_rows(keep)
        if taken >= steps:
            break
        check_stop(should_stop)
        taken += run(taken)
    if drop:
        done_out[rows] = loop.out
    out = done_out.cpu().tolist()
    if align is not None:
        del run, graphs, loop, decoder  # its caches (and the graphs' pools) go before the alignment pass
        heads, frames_per_row, times = align
        times.extend(_token_times(model, encoded, cross, prompt, out, plan, heads, frames_per_row, options))
    return out


def _beam(model, encoded: torch.Tensor, plan: _Plan, options: DecodeOptions,
          should_stop: ShouldStop | None = None, watch: Callable[[list[float]], Any] | None = None,
          stride: int = 2, prompt_ids: Sequence[int] = (),
          align: tuple[Sequence[tuple[int, int]], Sequence[int], list] | None = None) -> list[list[int]]:
    """Beam search, plan.beams wide, without timestamp tokens: per row the best text's ids and end of text.

    The search of OpenAI Whisper and faster-whisper (patience 1, no length penalty): each step the live
    beams' continuations are ranked by summed log-probability; those that end the text, ranked above the
    plan.beams-th that does not, join the row's finished texts, and the plan.beams best others go on. A row
    is done with plan.beams finished texts (else, at the step limit, its live beams fill them up); the one
    with the highest log-probability per token wins. Arguments as _greedy's (a row's beams share its
    cross-attention keys and values); rows that are done leave the batch."""
    k, neg = plan.beams, float("-inf")
    # bfloat16 keys and values (options.bf16): a row's beams read them as one query block, which on the bench's
    # CPU took 2.6 ms a layer against 4.4 in float32 (one query alone is faster in float32: greedy keeps it).
    decoder, prompt, prefix, steps = _start(model, encoded, plan, options, prompt_ids,
                                            torch.bfloat16 if options.bf16 else None)
    dev, b = encoded.device, encoded.shape[0]
    cross = decoder.cross  # the alignment pass reads every row's, before any leaves the batch
    decoder.expand(k, prefix - 1)
    vocab = model.config.vocab_size

    def columns(first_step: bool, early: bool) -> torch.Tensor:  # token ids, not a vocabulary-wide mask
        ids = {*plan.suppress, *(plan.begin_suppress if first_step else ()), *((plan.eos,) if early else ())}
        return torch.tensor(sorted(t for t in ids if 0 <= t < vocab), dtype=torch.long, device=dev)

    forbidden = {(f, e): columns(f, e) for f in (True, False) for e in (True, False)}
    live = list(range(b))  # the rows still searching, in the decoder's order (k decoder rows each)
    seqs: list[list[list[int]]] = [[[]] * k for _ in range(b)]  # per row, per beam: the tokens so far
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]  # per row: (summed log-prob, tokens)
    scores = torch.full((b, k), neg, device=dev)
    scores[:, 0] = 0.0  # the beams start as one
    tokens = prompt[:, -1].repeat_interleave(k)
    for n in range(steps):
        check_stop(should_stop)
        decoder.reserve(prefix + n)
        logits = decoder.step(tokens, torch.tensor(prefix - 1 + n, device=dev), prefix + n)
        logits = logits.index_fill_(1, forbidden[n == 0, n < plan.min_new_tokens], neg)  # (first step, too early)
        # Each beam's k + 1 best continuations hold the row's k best that do not end the text (OpenAI's way):
        # no log-softmax over the whole vocabulary is written, only its normaliser read.
        best, token_ids = logits.topk(k + 1, dim=-1)
        total = (best - logits.logsumexp(dim=-1, keepdim=True) + scores.view(-1, 1)).view(len(live), -1)
        order = total.argsort(dim=-1, descending=True)
        top, where = total.gather(1, order).tolist(), token_ids.view(len(live), -1).gather(1, order).tolist()
        sources, nxt, kept, still = [], [], [], []
        for j, row in enumerate(live):
            chosen: list[tuple[float, int, int]] = []
            for score, rank, token in zip(top[j], order[j].tolist(), where[j]):
                if score == neg or len(chosen) == k:
                    break
                beam = rank // (k + 1)
                if token == plan.eos:
                    if len(finished[row]) < k:
                        finished[row].append((score, seqs[row][beam]))
                else:
                    chosen.append((score, beam, token))
            if len(finished[row]) >= k or not chosen:
                continue
            chosen += [(neg, *chosen[0][1:])] * (k - len(chosen))  # too few live continuations: dead copies
            seqs[row] = [seqs[row][beam] + [token] for _, beam, token in chosen]
            sources += [j * k + beam for _, beam, _ in chosen]
            nxt += [token for _, _, token in chosen]
            kept += [score for score, _, _ in chosen]
            still.append(j)
        if len(still) < len(live):
            live = [live[j] for j in still]
            if not live:
                break
            decoder.keep(torch.tensor(sources, device=dev), prefix + n, torch.tensor(still, device=dev))
        else:
            decoder.keep(torch.tensor(sources, device=dev), prefix + n)
        tokens = torch.tensor(nxt, device=dev)
        scores = torch.tensor(kept, device=dev).view(len(live), k)
        if watch is not None and (n + 1) % _CHECK_EVERY == 0:
            at = [float(encoded.shape[1] * stride)] * b
            for row in live:
                at[row] = (n + 1) * TOKEN_SECONDS * _FRAMES_PER_SECOND
            watch(at)
    for j, row in enumerate(live):  # the step limit: the live beams fill up the finished texts, best first
        ranked = sorted(zip(scores[j].tolist(), seqs[row]), key=lambda x: -x[0])
        finished[row] += ranked[: k - len(finished[row])]
    out = [list(max(texts, key=lambda x: x[0] / max(1, len(x[1])))[1]) + [plan.eos] if texts else [plan.eos]
           for texts in finished]
    if align is not None:
        del decoder
        heads, frames_per_row, times = align
        times.extend(_token_times(model, encoded, cross, prompt, out, plan, heads, frames_per_row, options))
    return out


def _token_times(model, encoded, cross, prompt: torch.Tensor, rows: list[list[int]], plan: _Plan,
                 heads: Sequence[tuple[int, int]], frames: Sequence[int], options: DecodeOptions) -> list:
    """(start, end) seconds of every text token of each row: the alignment heads' cross-attention over one
    teacher-forced pass (the prompt, the start tokens, the text), warped onto the row's real frames."""
    from engine.whisper_align import token_times

    counts = [row.index(plan.eos) if plan.eos in row else len(row) for row in rows]
    prefix = prompt.shape[1]
    longest = max(counts) if counts else 0
    text = torch.tensor([row[:longest] + [plan.pad] * (longest - len(row[:longest])) for row in rows],
                        dtype=torch.long, device=prompt.device)
    tokens = torch.cat([prompt, text], dim=1)[:, : model.config.max_target_positions]
    decoder = _StaticDecoder(model, encoded, tokens.shape[1], options.attention, cross=cross)
    weights = decoder.cross_weights(tokens, heads)[:, :, prefix - 1:]
    width = int(getattr(model.config, "median_filter_width", 7) or 7)
    return token_times(weights, [min(c, weights.shape[2] - 1) for c in counts], frames, width)


def _frames_reached(loop: _Loop, plan: _Plan, frames: int, stride: int) -> list[float]:
    """How far into the window each row has got: a row that ended, all of it; else its last
    timestamp, or (without timestamps) its token count at TOKEN_SECONDS a token."""
    ended = loop.finished.tolist()
    if plan.timestamps:
        at = ((loop.ts_last - plan.timestamp_begin).clamp(min=0) * stride).tolist()
    else:
        at = [int(loop.n) * TOKEN_SECONDS * _FRAMES_PER_SECOND] * len(ended)
    return [float(frames) if e else float(a) for e, a in zip(ended, at)]


def _warm(loop: _Loop, window: int) -> None:
    """WARM_STEPS real decoding steps over `window`, on a side stream: what capturing needs first (cuBLAS
    workspaces, attention plans); they are the decode's own steps, not thrown away."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(WARM_STEPS):
            loop.step(window)
    torch.cuda.current_stream().wait_stream(stream)


def _capture(loop: _Loop, window: int) -> Callable[[], None]:
    """Record loop.step(window) as a CUDA graph (nothing runs while it is recorded); _warm first.

    (torch 2.11 on an H200 already picks cuDNN's attention for the decoder's cross-attention, at 4.1 TB/s:
    bench/gpu_attention_profile.py.)"""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loop.step(window)
    return graph.replay


class _SingleTokens:
    """A Whisper tokenizer as transformers' word grouping reads it (language, eos_token_id, decode), with every
    single text token of `rows` decoded at once by the tokenizers backend: the grouping decodes each token on
    its own, one Python call each (about 1.4 ms a row of 100 tokens, most of the words' time after decoding).
    tests/test_whisper_batch.py pins the strings to tokenizer.decode's over the whole vocabulary."""

    def __init__(self, tokenizer, rows: Sequence[Sequence[int]]) -> None:
        self._tokenizer = tokenizer
        self.language = getattr(tokenizer, "language", None)
        self.eos_token_id = tokenizer.eos_token_id
        backend = getattr(tokenizer, "backend_tokenizer", None)
        plain = backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False)
        text = sorted({int(t) for row in rows for t in row if int(t) < self.eos_token_id}) if plain else []
        self._single = dict(zip(text, backend.decode_batch([[t] for t in text], skip_special_tokens=False))) \
            if text else {}

    def decode(self, tokens, **kwargs) -> str:
        if len(tokens) == 1 and kwargs.keys() <= {"decode_with_timestamps"}:
            found = self._single.get(int(tokens[0]))
            if found is not None:
                return found
        return self._tokenizer.decode(tokens, **kwargs)


def _to_output(tokenizer, ids: list[int], timestamps: bool | str, time_precision: float,
               token_times=None) -> dict:
    """The pipeline's output for one row; with token_times (words), its {"chunks"} are words."""
    if token_times is None:
        text, optional = tokenizer._decode_asr([{"tokens": torch.tensor([ids], dtype=torch.long)}],
                                               return_timestamps=bool(timestamps), return_language=None,
                                               time_precision=time_precision)
        return {"text": text, **optional}
    # The pipeline's own word grouping (transformers' Whisper tokenizer; pinned by tests/test_whisper_batch.py),
    # fed each token's (start, end) at the precision the pipeline gives.
    from transformers.models.whisper.tokenization_whisper import _collate_word_timestamps

    ids = ids[: len(token_times)]
    times = [(round(float(start), 2), round(float(end), 2)) for start, end in token_times]
    words = _collate_word_timestamps(tokenizer, ids, times, None, False) if ids else []
    return {"text": tokenizer.decode(ids), "chunks": words}


def _pipeline_path(pipe, chunks, batch_size, return_timestamps, generate_kwargs, progress,
                   should_stop: ShouldStop | None = None) -> list[dict]:
    """The plain pipeline, batch by batch, for what the fast path does not cover.

    A generating model gets a StepWatch: cancelled between decoding steps, and a batch's progress
    guessed from its steps (TOKEN_SECONDS a step) until the batch is done."""
    rate = pipe.feature_extractor.sampling_rate
    meter = AudioMeter([n / rate for n in chunk_samples(chunks)], progress)
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if generate_kwargs:  # CTC pipelines take none
        kwargs["generate_kwargs"] = generate_kwargs
    if return_timestamps:
        kwargs["return_timestamps"] = return_timestamps
    generates = bool(getattr(pipe.model, "can_generate", lambda: False)())
    out: list[dict] = []
    step = max(batch_size, 1)
    for start in range(0, len(chunks), step):
        check_stop(should_stop)
        batch = [{"raw": np.asarray(c, dtype=np.float32), "sampling_rate": rate} for c in chunks[start:start + step]]
        call = kwargs
        if generates:
            def on_step(steps: int, first: int = start, n: int = len(batch)) -> None:
                for i in range(first, first + n):
                    meter.reach(i, steps * TOKEN_SECONDS)
                meter.report()

            watch = StepWatch(should_stop, on_step if progress is not None else None)
            gen = dict(kwargs.get("generate_kwargs") or {})
            gen["logits_processor"] = [*(gen.get("logits_processor") or ()), watch]
            call = {**kwargs, "generate_kwargs": gen}
        out.extend(pipe(batch, **call))
        meter.finish(range(start, start + len(batch)))
    return out
