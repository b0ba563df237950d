"""``classifier.precision``: with ``auto`` the float sibling runs where XNNPACK's float kernels beat
its int8 ones (x86 without VNNI/AMX), the int8 model everywhere else or where there is no sibling
(emotion_ferplus.tflite ships int8 only), and the choice is reported; ``float`` insists on the
sibling and names it when it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO
from daemon.model.precision import Choice, NoFloatSibling, choose_model, cpu_flags, float_is_faster, hwcap_flags

EPYC = ("x86_64", frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"}))
SAPPHIRE_RAPIDS = ("x86_64", frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"}))
ALDER_LAKE = ("x86_64", frozenset({"avx2", "fma", "avx_vnni"}))
CORTEX_A76 = ("aarch64", frozenset({"fp", "asimd", "asimddp", "fphp", "asimdhp"}))
NEOVERSE_V2 = ("aarch64", frozenset({"fp", "asimd", "asimddp", "i8mm", "sve2"}))
CORTEX_A72 = ("aarch64", frozenset({"fp", "asimd", "crc32"}))  # Raspberry Pi 4: no dot products
CORTEX_A72_FP16 = ("aarch64", frozenset({"fp", "asimd", "fphp", "asimdhp"}))  # float16 alone changes nothing
ATOM = ("x86_64", frozenset({"sse4_2"}))


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0b\n"
    assert cpu_flags(x86) == {"fpu", "sse2", "avx2", "fma"}
    assert cpu_flags(arm) == {"fp", "asimd", "asimddp"}
    assert cpu_flags("") == set()


@pytest.mark.parametrize("host, float_wins", [(EPYC, True), (SAPPHIRE_RAPIDS, False), (ALDER_LAKE, False),
                                             (CORTEX_A76, False), (NEOVERSE_V2, False), (CORTEX_A72, True),
                                             (CORTEX_A72_FP16, True), (ATOM, False)])
def test_float_wins_only_without_int8_dot_products(host, float_wins):
    faster, why = float_is_faster(*host)
    assert faster is float_wins and why
    if host[0] == "aarch64":
        assert ("asimddp" in why) and (("no 8-bit dot products" in why) is float_wins)


def test_arm_features_come_from_the_kernels_hardware_capabilities():
    # AT_HWCAP bits 0 fp, 1 asimd, 9 fphp, 10 asimdhp, 20 asimddp; AT_HWCAP2 bit 13 i8mm
    assert hwcap_flags(1 | 2 | 1 << 20, 1 << 13) == {"fp", "asimd", "asimddp", "i8mm"}
    assert hwcap_flags(1 | 2 | 1 << 9 | 1 << 10, 0) == {"fp", "asimd", "fphp", "asimdhp"}
    assert hwcap_flags(0, 0) == set()


@pytest.fixture
def pair(tmp_path) -> Path:
    """The shipped default (int8) and its float sibling, with manifests, in a folder of their own."""
    for name in ("emotion_wild.tflite", "emotion_wild.json", "emotion_wild_fp16.tflite", "emotion_wild_fp16.json"):
        if not (REPO / "models" / name).is_file():
            pytest.skip(f"models/{name} not built")
        shutil.copy(REPO / "models" / name, tmp_path / name)
    return tmp_path / "emotion_wild.tflite"


@pytest.fixture
def ferplus() -> Path:
    """The shipped alternative, int8 only: no float sibling beside it (issue 33)."""
    path = REPO / "models" / "emotion_ferplus.tflite"
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        pytest.skip("models/emotion_ferplus.tflite not built")
    assert not (REPO / "models" / "emotion_ferplus_fp16.tflite").exists()
    return path


def test_auto_runs_the_float_sibling_on_an_avx2_cpu_and_says_why(pair):
    choice = choose_model(pair, "auto", "cpu", "int8", EPYC)
    assert choice.path == pair.with_name("emotion_wild_fp16.tflite")
    assert "emotion_wild_fp16.tflite instead of emotion_wild.tflite" in choice.reason and "AVX2" in choice.reason
    pi4 = choose_model(pair, "auto", "cpu", "int8", CORTEX_A72)  # a Raspberry Pi 4 likewise
    assert pi4.path == choice.path and "Arm without asimddp/i8mm" in pi4.reason


def test_the_int8_model_runs_where_int8_is_fast_when_asked_for_as_named_or_off_the_cpu(pair):
    for host in (SAPPHIRE_RAPIDS, ALDER_LAKE, CORTEX_A76, NEOVERSE_V2):
        assert choose_model(pair, "auto", "cpu", "int8", host) == Choice(pair)
    assert choose_model(pair, "file", "cpu", "int8", EPYC) == Choice(pair)
    assert choose_model(pair, "auto", "gpu", "int8", EPYC) == Choice(pair)  # the GPU path names its model
    fp16 = pair.with_name("emotion_wild_fp16.tflite")
    assert choose_model(fp16, "auto", "cpu", "float16", EPYC) == Choice(fp16)


def test_float_runs_the_float_sibling_on_any_cpu(pair):
    fp16 = pair.with_name("emotion_wild_fp16.tflite")
    for host in (EPYC, SAPPHIRE_RAPIDS, CORTEX_A76):
        choice = choose_model(pair, "float", "cpu", "int8", host)
        assert choice.path == fp16 and "precision float" in choice.reason
    assert choose_model(fp16, "float", "cpu", "float16", SAPPHIRE_RAPIDS) == Choice(fp16)  # already float


def test_without_a_float_sibling_the_int8_model_runs_and_the_reason_says_so(pair):
    pair.with_name("emotion_wild_fp16.json").unlink()  # a sibling without its manifest does not count
    choice = choose_model(pair, "auto", "cpu", "int8", EPYC)
    assert choice.path == pair and "emotion_wild_fp16.tflite is not beside emotion_wild.tflite" in choice.reason


def test_ferplus_has_no_float_sibling_auto_falls_back_to_int8_and_float_is_an_error(ferplus):
    choice = choose_model(ferplus, "auto", "cpu", "int8", EPYC)
    assert choice.path == ferplus and "emotion_ferplus_fp16.tflite is not beside emotion_ferplus.tflite: int8 runs" in choice.reason
    assert choose_model(ferplus, "auto", "cpu", "int8", SAPPHIRE_RAPIDS) == Choice(ferplus)  # int8 is the fast path
    with pytest.raises(NoFloatSibling) as err:
        choose_model(ferplus, "float", "cpu", "int8", SAPPHIRE_RAPIDS)
    assert str(REPO / "models" / "emotion_ferplus_fp16.tflite") in str(err.value)


def test_the_classifier_built_from_config_runs_the_choice_and_reports_it(pair, ferplus, monkeypatch, caplog):
    import daemon.model.precision as precision
    from daemon.model.config import ClassifierConfig
    from daemon.model.tflite import ModelError, TfliteModel

    monkeypatch.setattr(precision, "_host", lambda: EPYC)
    model = TfliteModel.from_config(ClassifierConfig(model=pair))
    info = model.info()
    assert info["model"] == "emotion_wild_fp16.tflite" and info["quantization"] == "float16"
    assert "instead of emotion_wild.tflite" in info["precision_reason"]
    with caplog.at_level("DEBUG", logger="daemon.model.tflite"):
        info = TfliteModel.from_config(ClassifierConfig(model=ferplus)).info()
    assert info["model"] == "emotion_ferplus.tflite" and info["quantization"] == "int8"
    assert "emotion_ferplus_fp16.tflite is not beside" in info["precision_reason"]
    assert "classifier.precision auto: " in caplog.text and "int8 runs" in caplog.text  # the reason is logged

    monkeypatch.setattr(precision, "_host", lambda: SAPPHIRE_RAPIDS)
    info = TfliteModel.from_config(ClassifierConfig(model=pair)).info()
    assert info["model"] == "emotion_wild.tflite" and info["quantization"] == "int8" and "precision_reason" not in info
    info = TfliteModel.from_config(ClassifierConfig(model=pair, precision="float")).info()
    assert info["model"] == "emotion_wild_fp16.tflite" and info["quantization"] == "float16"
    with pytest.raises(ModelError, match="emotion_ferplus_fp16.tflite"):
        TfliteModel.from_config(ClassifierConfig(model=ferplus, precision="float"))


def test_emotiond_check_refuses_float_for_a_model_without_a_float_sibling(ferplus, tmp_path, capsys):
    from daemon.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"classifier: {{model: '{ferplus}', precision: float}}\n"
                   "eyes: {enabled: false}\nhead_pose: {enabled: false}\nsource: {uri: '/nonexistent.mp4'}\n")
    assert main(["check", "--config", str(cfg), "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("model"))
    assert "failed" in line and "classifier.precision float" in line and "emotion_ferplus_fp16.tflite" in line
