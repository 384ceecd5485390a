"""--device-map auto on a machine without a GPU: accelerate's offload path, the same answers."""

from __future__ import annotations

import pytest

from engine.registry import PipelineRegistry
from engine.settings import Settings

TEXT, LABELS = "this is urgent please call me now", ["urgent", "phone"]


def test_max_memory_pushes_part_of_the_model_to_disk_and_it_still_answers_the_same(tmp_path):
    from scripts.device_map_check import build_model

    size = build_model(tmp_path / "nli", layers=2)  # fp16 on disk, float32 (twice that) once loaded on CPU
    plain = PipelineRegistry(Settings(device="cpu", zero_shot_model=str(tmp_path / "nli")))
    expected = plain.get("zero-shot-classification")(TEXT, candidate_labels=LABELS)
    plain.unload_all()

    reg = PipelineRegistry(Settings(device="cpu", device_map="auto", max_memory=f"cpu={size}",
                                    zero_shot_model=str(tmp_path / "nli")))
    got = reg.get("zero-shot-classification")(TEXT, candidate_labels=LABELS)
    (row,) = reg.status()
    assert row["device"] == "cpu, disk"
    assert set(row["memory_by_device_mb"]) == {"cpu", "disk"} and row["memory_by_device_mb"]["disk"] > 0
    assert got["labels"] == expected["labels"]
    assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)
    assert reg.unload(row["id"]) and reg.status() == []
