"""Average several trained classifiers inside one graph.

Independently trained networks make partly independent mistakes, so the mean of their
probabilities is more accurate than any one of them (on FER-2013 the usual gain is 1-3 points).
Building the average into the model, rather than running several models in the daemon, keeps
the daemon's contract unchanged: one ``.tflite`` file, one manifest, one invoke per batch of
faces, and the converter quantises and measures exactly what ships.
"""

from __future__ import annotations

import json
from pathlib import Path

PROVENANCE_SUFFIX = ".provenance.json"


class EnsembleError(ValueError):
    pass


def build_ensemble(members: list, name: str = "ensemble"):
    """One Keras model whose output is the mean of the members' softmax outputs.

    Members must take the same input and give the same number of classes."""
    import keras
    from keras import layers

    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two models")
    shape, n = tuple(members[0].input_shape[1:]), members[0].output_shape[-1]
    for i, m in enumerate(members):
        if tuple(m.input_shape[1:]) != shape or m.output_shape[-1] != n:
            raise EnsembleError(
                f"member {i} takes {tuple(m.input_shape[1:])} and gives {m.output_shape[-1]} classes; "
                f"member 0 takes {shape} and gives {n}"
            )
        m.name = f"member{i}"  # layer names must be unique in the outer graph
        m.trainable = False
    inp = keras.Input(shape, name="face")
    out = layers.Average(name="probs")([m(inp) for m in members])
    return keras.Model(inp, out, name=name)


def ensemble_cli(args) -> int:
    import keras

    from .convert import training_provenance

    paths = [Path(p) for p in args.models]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
    model = build_ensemble([keras.models.load_model(p, compile=False) for p in paths])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    provenance = {
        "ensemble": "mean of the members' probabilities, inside one graph",
        "members": [{"model": str(p), "training": training_provenance(p)} for p in paths],
    }
    prov = out.with_name(out.stem + PROVENANCE_SUFFIX)
    prov.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {out} ({len(paths)} members, {model.count_params():,} parameters) and {prov.name}")
    return 0
