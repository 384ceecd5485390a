import pytest

from app import build_parser, settings_from_args
from engine.settings import Settings


def test_defaults_serve_locally_on_7860():
    s = Settings.from_env(env={})
    assert (s.host, s.port, s.device, s.dtype, s.device_map, s.share) == ("127.0.0.1", 7860, "auto", "auto", "none", False)


def test_env_vars_fill_fields_with_types():
    s = Settings.from_env(env={"STUDIO_PORT": "9000", "STUDIO_SHARE": "true", "STUDIO_MAX_LOADED": "2",
                               "STUDIO_ASR_MODEL": "/models/w", "STUDIO_MAX_FILE_MB": "12.5"})
    assert (s.port, s.share, s.max_loaded, s.asr_model, s.max_file_mb) == (9000, True, 2, "/models/w", 12.5)


def test_bad_env_value_is_a_clear_error():
    with pytest.raises(ValueError, match="STUDIO_PORT must be a number"):
        Settings.from_env(env={"STUDIO_PORT": "eighty"})
    with pytest.raises(ValueError, match="device_map must be one of"):
        Settings.from_env(env={"STUDIO_DEVICE_MAP": "balanced"})


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(Exception):
        s.port = 1  # type: ignore[misc]


def test_flags_override_env(monkeypatch):
    monkeypatch.setenv("STUDIO_PORT", "9000")
    monkeypatch.setenv("STUDIO_DEVICE", "cuda")
    args = build_parser().parse_args(["--port", "8123", "--device-map", "auto", "--image-model", "m/x", "--offline"])
    s = settings_from_args(args)
    assert (s.port, s.device, s.device_map, s.image_model, s.offline) == (8123, "cuda", "auto", "m/x", True)


def test_help_lists_every_flag_the_brief_names(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--share", "--device", "--dtype", "--device-map", "--asr-model",
                 "--image-model", "--zero-shot-model", "--docqa-model", "--max-loaded", "--offline"):
        assert flag in out


def test_model_for_task():
    s = Settings(asr_model="a", image_model="b", zero_shot_model="c", docqa_model="d")
    assert [s.model_for(t) for t in ("automatic-speech-recognition", "image-classification",
                                     "zero-shot-classification", "document-question-answering")] == list("abcd")
