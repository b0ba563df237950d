"""The README's configuration reference and the shipped config.yaml stay in step with the
validators."""

from __future__ import annotations

from pathlib import Path

from daemon.config import load_config, reference

REPO = Path(__file__).resolve().parents[1]


def test_readme_documents_every_config_key():
    readme = (REPO / "README.md").read_text()
    missing = [key for key, _, _ in reference() if f"`{key}`" not in readme]
    assert not missing, f"regenerate the table with `python -m daemon.config`: {missing}"


def test_every_config_key_has_a_title():
    assert [key for key, _, title in reference() if not title] == []


def test_shipped_config_is_valid_and_names_the_shipped_models():
    cfg = load_config(REPO / "config.yaml")
    assert cfg.classifier.model == REPO / "models" / "emotion_ferplus.tflite"
    assert cfg.eyes.model == REPO / "models" / "eye_state.tflite"
    assert {r.type for r in cfg.rules} >= {"driver_fatigue", "driver_absent"}


def test_relative_file_sources_are_relative_to_the_config_file(tmp_path):
    from daemon.config import parse_config

    cfg = parse_config({"source": {"uri": "clips/a.mp4"}, "classifier": {"model": str(REPO / "models/emotion.tflite")},
                        "eyes": {"enabled": False}}, base_dir=tmp_path)
    assert cfg.source.uri == str(tmp_path / "clips/a.mp4")
    for uri in ("0", "/dev/video2", "rtsp://cam/stream", "/abs/clip.mp4"):
        cfg = parse_config({"source": {"uri": uri}, "eyes": {"enabled": False},
                            "classifier": {"model": str(REPO / "models/emotion.tflite")}}, base_dir=tmp_path)
        assert cfg.source.uri == uri
