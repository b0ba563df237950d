"""``converter choose``: a network and its output balance chosen on FER+ and CK+ together, by a
stated rule, from one pass per network (issue 33's choice, repeatable)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, shared_file

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _outputs(name: str, logits: np.ndarray, y_fer: np.ndarray, y_ck: np.ndarray):
    from converter.choose import Outputs

    # the same logits for face and mirror; the first half of the rows is FER+, the rest CK+
    f, c = logits[: len(y_fer)], logits[len(y_fer):]
    return Outputs(name, (f, f), (c, c))


def test_the_balance_moves_neutral_faces_and_the_best_feasible_point_is_chosen():
    from converter.choose import format_choice, sweep

    prior = np.array([0.1, 0.1, 0.1, 0.2, 0.3, 0.1, 0.1])
    # two FER+ faces (neutral, angry) and two CK+ faces (angry, sad); neutral leads each by 0.5
    logits = np.full((4, 7), -5.0)
    logits[0, 4], logits[0, 0] = 0.0, -0.5  # FER+ neutral face
    logits[1, 0], logits[1, 4] = 0.0, -0.5  # FER+ angry face
    logits[2, 4], logits[2, 0] = 0.0, -0.5  # CK+ anger that looks neutral
    logits[3, 5] = 0.0  # CK+ sad, plain
    y_fer, y_ck = np.array([4, 0]), np.array([0, 5])
    out = _outputs("net", logits, y_fer, y_ck)
    # tau 1: angry gains log(0.3/0.1) = 1.10 over neutral: every anger is found, the neutral face lost
    choice = sweep([out], y_fer, y_ck, LABELS, prior, taus=(0.0, 1.0), ck_bar=0.75, recall_bar=0.5,
                   ck_margin=0.0, recall_margin=0.0)
    by_tau = {p.tau: p for p in choice.points}
    assert (by_tau[0.0].ferplus, by_tau[0.0].ckplus) == (1.0, 0.5)
    assert by_tau[0.0].ckplus_recall == {"angry": 0.0, "sad": 1.0}  # CK+ has no neutral: no column
    assert (by_tau[1.0].ferplus, by_tau[1.0].ckplus) == (0.5, 1.0)
    assert not by_tau[0.0].feasible and by_tau[1.0].feasible
    assert choice.chosen is by_tau[1.0]
    assert "chosen: net with tau 1.00" in format_choice(choice)
    # a margin the point cannot clear leaves nothing chosen, and the verdict says what came closest
    strict = sweep([out], y_fer, y_ck, LABELS, prior, taus=(0.0, 1.0), ck_bar=0.75, recall_bar=0.5,
                   ck_margin=0.3, recall_margin=0.0)
    assert strict.chosen is None
    assert "no point meets CK+ >= 75 %" in format_choice(strict) and "closest: net tau 1.00" in format_choice(strict)


def test_among_feasible_points_the_best_ferplus_wins_over_the_best_ckplus():
    from converter.choose import sweep

    y_fer, y_ck = np.array([0, 3, 4, 4]), np.array([0, 3])
    good_fer = np.eye(7)[[0, 3, 4, 4, 0, 3]] * 5.0  # every face right
    worse_fer = np.eye(7)[[0, 3, 4, 0, 0, 3]] * 5.0  # one FER+ neutral called angry
    outs = [_outputs("worse", worse_fer, y_fer, y_ck), _outputs("better", good_fer, y_fer, y_ck)]
    choice = sweep(outs, y_fer, y_ck, LABELS, np.full(7, 1 / 7), taus=(0.0,))
    assert [p.ferplus for p in choice.points] == [0.75, 1.0]
    assert choice.chosen.network == "better"


def test_mixed_weights_interpolate_tensor_by_tensor_and_refuse_other_shapes():
    from converter.choose import ChooseError, mixed_weights

    a = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    b = [np.full((2, 2), 4.0, np.float32), np.full(3, 3.0, np.float32)]
    m = mixed_weights(a, b, 0.25)
    assert m[0] == pytest.approx(np.full((2, 2), 1.0)) and m[1] == pytest.approx(np.full(3, 1.5))
    assert m[0].dtype == np.float32
    assert mixed_weights(a, b, 0.0)[1] == pytest.approx(a[1]) and mixed_weights(a, b, 1.0)[0] == pytest.approx(b[0])
    with pytest.raises(ChooseError, match="same architecture"):
        mixed_weights(a, [b[0]], 0.5)
    with pytest.raises(ChooseError, match="same architecture"):
        mixed_weights(a, [b[0], np.ones(4, np.float32)], 0.5)


def test_the_shipped_float_sibling_chosen_again_gives_its_manifests_figures():
    """The whole path on real faces: the float sibling read back (its balance taken out), run
    through the daemon's preprocessing on FER+ PublicTest and CK+48 with mirrors, the balance put
    back by the sweep: the manifest's own figures, measured by ``converter convert``, come out."""
    pytest.importorskip("tensorflow")
    from converter.choose import identity_batchnorms, load_network, network_outputs, sweep
    from converter.datasets import load_ckplus, load_split
    from converter.ferplus import load_ferplus

    data = shared_file("fer2013")
    fp16 = REPO / "models" / "emotion_wild_fp16.tflite"
    manifest = json.loads(fp16.with_suffix(".json").read_text())
    test = load_split(data, "test")
    targets = load_ferplus(test, data / "ferplus")
    has = targets.majority >= 0
    ck = load_ckplus(shared_file("ckplus48"), test.labels)
    model = load_network(fp16, 7)
    assert identity_batchnorms(model)  # read from TFLite: weights that can be mixed
    out = network_outputs(model, fp16.name, targets.split.subset(np.flatnonzero(has)), ck,
                          template=manifest["crop"].get("template"))  # cut as its manifest says
    prior = np.array([manifest["output_balance"]["prior"][c] for c in test.labels])
    tau = manifest["output_balance"]["tau"]
    (point,) = sweep([out], targets.majority[has], ck.y, test.labels, prior, taus=(tau,)).points
    assert point.ferplus == pytest.approx(manifest["metrics_ferplus"]["accuracy"], abs=0.003)
    assert point.ckplus == pytest.approx(manifest["metrics_ckplus"]["accuracy"], abs=0.003)
    for label, recall in point.ckplus_recall.items():
        assert recall == pytest.approx(manifest["metrics_ckplus"]["per_class_recall"][label], abs=0.014), label


def test_an_epoch_of_a_run_is_rebuilt_from_its_config_and_a_fresh_network_cannot_be_mixed(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from dataclasses import asdict

    from converter.choose import identity_batchnorms, load_network
    from converter.cli import main
    from converter.distill import DistillConfig, build_student

    # a run folder as `converter distill` leaves it: its config, then one weights file per epoch
    cfg = DistillConfig(data="unused", out=str(tmp_path), backbone_size=64, alpha=0.35, weights=None)
    fresh, _ = build_student(cfg, 7)
    (tmp_path / "train_config.json").write_text(json.dumps({**asdict(cfg), "command": "python -m converter distill"}))
    fresh.save_weights(str(tmp_path / "epoch_01.weights.h5"))
    read = load_network(tmp_path / "epoch_01.weights.h5", 7)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 48, 48, 1)).astype(np.float32)
    assert np.asarray(read(x)) == pytest.approx(np.asarray(fresh(x)), abs=1e-6)
    assert not identity_batchnorms(read)  # BatchNorm variance 1, not the folded 1 - eps: not mixable
    (tmp_path / "train_config.json").unlink()
    from converter.choose import ChooseError

    with pytest.raises(ChooseError, match="no train_config.json beside it"):
        load_network(tmp_path / "epoch_01.weights.h5", 7)
    data = shared_file("fer2013")
    common = ["choose", "--data", str(data), "--ferplus", str(data / "ferplus"), "--ckplus", str(shared_file("ckplus48"))]
    fp16 = str(REPO / "models" / "emotion_wild_fp16.tflite")
    assert main([*common, "--model", fp16, "--mix", "0,0.5"]) == 2
    assert "--mix needs exactly two --model, got 1" in capsys.readouterr().err
    assert main([*common, "--model", fp16, "--model", str(tmp_path / "none.tflite")]) == 2
    assert "model file not found" in capsys.readouterr().err
