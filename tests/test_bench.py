"""Smoke tests: every benchmark script runs on tiny inputs and writes the figures the README reads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import run_all
from bench.speech_audio import RATE, read_wav, recording, sentences, write_wav

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_sentences_are_varied_and_repeatable():
    first = sentences(20, seed=3)
    assert first == sentences(20, seed=3)
    assert len(set(first)) > 15 and all(s.endswith(".") for s in first)


@needs_espeak
def test_recording_is_speech_with_pauses_and_its_text(tmp_path):
    audio, text = recording(6.0, seed=11)
    assert audio.dtype == np.float32 and audio.size >= 6 * RATE
    assert len(text.split()) >= 8
    write_wav(tmp_path / "a.wav", audio)
    assert np.abs(read_wav(tmp_path / "a.wav") - audio).max() < 1e-3


def test_registry_bench_counts_one_load_for_eight_threads(tmp_path):
    from bench import registry_bench

    result = registry_bench.main(["--out-dir", str(tmp_path)])
    assert result["target_met"]
    for row in result["models"].values():
        assert row["threads_on_cold_key"]["loads"] == 1
        assert row["cold_vs_cached"]["cached_get"]["median_us"] < 1000
    assert json.loads((tmp_path / "registry.json").read_text())["target_met"]


def test_overhead_bench_times_the_app_and_the_direct_call(tmp_path):
    from bench import overhead

    result = overhead.main(["--calls", "3", "--out-dir", str(tmp_path)])
    on, off = result["batching_on"], result["batching_off"]
    assert result["direct"]["n"] == 3 and on["gradio_client"]["n"] == on["browser_protocol"]["n"] == 3
    assert off["sample_output"][0]["label"] and on["same_output_both_ways"]  # the app really classified it
    assert on["added_median_ms_browser_protocol"] == pytest.approx(
        on["browser_protocol"]["median_ms"] - result["direct"]["median_ms"], abs=0.01)
    assert (tmp_path / "overhead.json").exists()


def test_startup_bench_reports_start_time_and_memory_per_model(tmp_path):
    from bench import startup

    result = startup.main(["--starts", "1", "--out-dir", str(tmp_path)])
    assert 0 < result["start_to_http_200_s"]["median"] < 120
    loaded = result["rss_after_loading_mb"]
    assert len(loaded) == 5 and all(r["rss_mb"] > 50 for r in loaded)


@needs_espeak
def test_long_audio_bench_times_each_row_in_its_own_warmed_process(tmp_path):
    from bench import long_audio_cpu
    from tests.conftest import WHISPER_TINY_EN

    if not WHISPER_TINY_EN.is_dir():
        pytest.skip("needs ../shared/models/whisper-tiny.en")
    result = long_audio_cpu.main(["--seconds", "35", "--rounds", "1", "--rows", "app_default,app_int8",
                                  "--once", "raw_nots", "--out-dir", str(tmp_path)])
    runs = result["runs"]
    assert [r["config"] for r in runs] == ["app_default", "app_int8", "raw_nots"]
    assert all("error" not in r and r["wall_s"] > 0 and r["warm_s"] > 0 and 0 <= r["wer"] < 0.5 for r in runs), runs
    assert runs[0]["median_start_error_s"] < 0.5 and runs[2]["median_start_error_s"] is None  # no timestamps
    assert set(result["summary"]) == {"app_default", "app_int8", "raw_nots"}


@needs_espeak
def test_gpu_script_smoke_runs_on_cpu(tmp_path):
    from bench import gpu_long_audio
    from tests.conftest import WHISPER_TINY_EN

    if not WHISPER_TINY_EN.is_dir():
        pytest.skip("needs ../shared/models/whisper-tiny.en for its tokenizer")
    assets = tmp_path / "assets"
    (assets / "whisper-tiny.en").mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(WHISPER_TINY_EN / name, assets / "whisper-tiny.en" / name)
    write_wav(assets / "speech.wav", recording(12.0, seed=12)[0])
    result = gpu_long_audio.main(["--smoke", "--assets", str(assets), "--out", str(tmp_path / "gpu.json")])
    names = {r["name"] for r in result["rows"] if "error" not in r}
    assert {"raw_pipeline_chunked_b24", "app_vad_b24", "asr_fast_graph_all"} <= names


@needs_espeak
def test_live_bench_reports_real_time_factor_latency_and_many_files(tmp_path):
    from bench import live
    from tests.conftest import WHISPER_TINY_EN

    if not WHISPER_TINY_EN.is_dir():
        pytest.skip("needs ../shared/models/whisper-tiny.en")
    result = live.main(["--live-seconds", "10", "--files", "2", "--file-seconds", "5", "--threads", "1",
                        "--out-dir", str(tmp_path)])
    assert result["live"]["real_time_factor"] > 0 and result["live"]["utterances"] >= 1
    assert result["live"]["latency_median_s"] is not None and result["live"]["wer_live"] is not None
    assert [r["name"].split(",")[0] for r in result["many"]["rows"]][0] == "many files"
    assert (tmp_path / "live.json").exists()


def test_plot_draws_every_device_from_the_jsons(tmp_path):
    (tmp_path / "long_audio_cpu.json").write_text(json.dumps({"summary": {
        "app_default": {"audio_min_per_s": 0.9}, "fw_batched": {"audio_min_per_s": 1.2},
        "raw_ts": {"audio_min_per_s": 0.5}}}))
    (tmp_path / "gpu_long_audio.json").write_text(json.dumps({"device": "H100", "rows": [
        {"name": "app_vad_all", "audio_min_per_s": 12.0}, {"name": "raw_pipeline_chunked_b24",
                                                                "audio_min_per_s": 1.7}]}))
    rows = run_all.plot_rows(tmp_path)
    assert {d for _, d, _ in rows} == {"CPU (2 cores), whisper-tiny.en", "H100, large-v3 shape"}
    path = run_all.plot(tmp_path)
    assert path.exists() and path.stat().st_size > 5000


def test_load_bench_accounts_for_every_request(tmp_path):
    from bench import load

    result = load.main(["--users", "3", "--requests", "3", "--duration", "15", "--grace", "20", "--settle", "0.5",
                        "--asr", "tiny", "--invalid-share", "0.25", "--variants", "default", "--rounds", "1",
                        "--out-dir", str(tmp_path)])
    run = result["variants"]["default"]
    c = run["counts"]
    assert c["sent"] == 9 and c["invalid_sent"] == 2
    assert c["sent"] == c["answered"] + c["rejected_queue_full"] + c["user_errors"] + c["failed"]
    assert c["lost"] == 0 and c["failed"] == 0, run["messages"]["failed"]
    assert c["answered"] == 7 and c["user_errors"] == 2  # the queue (64) is never full with 3 users
    assert len(run["requests"]) == 9
    assert all(r["message"].strip() for r in run["requests"] if r["outcome"] in ("rejected", "user_error"))
    for latency in (run["latency_answered"], *(e["latency_answered"] for e in run["by_endpoint"].values()
                                               if e["counts"]["answered"])):
        assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert run["rss_mb"]["peak"] >= run["rss_mb"]["before_load"] > 50
    assert run["server"]["alive_after_load"] and run["server"]["answers_after_load"]
    assert json.loads((tmp_path / "load.json").read_text())["variants"]["default"]["counts"] == c
