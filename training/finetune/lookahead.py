"""Give an exported DeepFilterNet3 model more look-ahead: the same network, one (or more) frames
later, with new convolution taps that see the frames in between.

    training/.venv/bin/python training/finetune/lookahead.py SRC_DIR OUT_DIR [--frames 1]

The encoder's two input convolutions (`erb_conv0`, `df_conv0`) are causal in time: a Pad of
`k - 1` zeros in front, then a kernel of `k` = 3 frames, so the encoder's output at frame t has
seen the features of frames t-2 .. t. Everything after them is causal too and shift-invariant in
time (grouped GRUs, 1-frame convolutions, the deep-filter pathway's 5-frame convolution on `c0`).
The runner applies the outputs of frame t to the spectrum `conv_lookahead` frames back.

This script makes each input kernel `k + N` frames long (N = --frames) and the Pad `k + N - 1`,
with the old taps on the oldest `k` frames and zeros on the `N` newest. The network then computes
at frame t exactly what it computed at frame t - N, so `conv_lookahead` goes up by N (the
outputs land on the same spectrum frames as before) while `df_lookahead` stays: the deep filter
still reaches 2 frames past its target, now N + 2 frames behind the input. The new model is the
old one delayed by N hops (N x 10 ms more latency; a 2-frame model becomes a 3-frame, 40 ms
one), equal to it sample for sample after the first hop, until training moves the new taps off
zero so that they use the frames the old network could not see.

The rest of the graphs, the names of every tensor and the weights' layout stay as they were, so
onnx_torch.OnnxModule trains it and nomusic's runner loads it with the new config.ini.
"""
from __future__ import annotations

import argparse
import configparser
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

FEATURE_INPUTS = ("feat_erb", "feat_spec")


def _evaluate_constant(graph: onnx.GraphProto, name: str) -> np.ndarray:
    """The value of `name`, computed by running only the constant nodes it depends on."""
    from onnx.reference import ReferenceEvaluator
    producers = {o: n for n in graph.node for o in n.output}
    needed, stack = [], [name]
    while stack:
        node = producers[stack.pop()]
        if node not in needed:
            needed.append(node)
            stack.extend(i for i in node.input if i in producers)
    inits = {i.name for i in graph.initializer}
    sub = onnx.helper.make_graph(
        [n for n in graph.node if n in needed], "pads",
        [], [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None)],
        [i for i in graph.initializer if i.name in inits])
    model = onnx.helper.make_model(sub, opset_imports=[onnx.helper.make_opsetid("", 17)])
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


def _drop_dead_nodes(graph: onnx.GraphProto):
    """Removes nodes none of whose outputs is used (the pads' old constant arithmetic)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def extend_encoder(enc: onnx.ModelProto, frames: int) -> list[str]:
    """Extends the input convolutions of `enc` in place; returns the names of the changed convs."""
    g = enc.graph
    inits = {i.name: i for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = []
    for feat in FEATURE_INPUTS:
        (pad,) = [n for n in consumers.get(feat, []) if n.op_type == "Pad"]
        (conv,) = [n for n in consumers[pad.output[0]] if n.op_type == "Conv"]
        pads = _evaluate_constant(g, pad.input[1]).astype(np.int64)
        w = numpy_helper.to_array(inits[conv.input[1]])
        k = w.shape[2]
        # [N, C, T, F] begins then ends: only k - 1 frames in front of the time axis.
        if pads.tolist() != [0, 0, k - 1, 0, 0, 0, 0, 0]:
            raise SystemExit(f"{pad.name}: pads {pads.tolist()} are not a causal {k}-frame pad")
        pads[2] += frames
        name = f"{pad.name}/pads_lookahead"
        g.initializer.append(numpy_helper.from_array(pads, name))
        pad.input[1] = name
        wide = np.concatenate([w, np.zeros(w.shape[:2] + (frames,) + w.shape[3:], w.dtype)], axis=2)
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(wide, conv.input[1]))
        for a in conv.attribute:
            if a.name == "kernel_shape":
                a.ints[0] = k + frames
        changed.append(conv.name)
    _drop_dead_nodes(g)
    onnx.checker.check_model(enc)
    return changed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="an exported model directory (enc.onnx, erb_dec.onnx, df_dec.onnx, config.ini)")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=1, help="frames of look-ahead to add (10 ms each)")
    a = p.parse_args(argv)
    if a.frames < 1:
        raise SystemExit("--frames must be at least 1")
    src, out = Path(a.src), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    enc = onnx.load(src / "enc.onnx")
    changed = extend_encoder(enc, a.frames)
    onnx.save(enc, out / "enc.onnx")
    for f in ("erb_dec.onnx", "df_dec.onnx"):
        shutil.copyfile(src / f, out / f)
    cfg = configparser.ConfigParser()
    cfg.read(src / "config.ini")
    look = int(cfg["deepfilternet"]["conv_lookahead"]) + a.frames
    # Rewrite only that line, so the file stays byte-for-byte the original elsewhere.
    text = (src / "config.ini").read_text()
    old = f"conv_lookahead = {cfg['deepfilternet']['conv_lookahead']}"
    if text.count(old) != 1:
        raise SystemExit(f"{src / 'config.ini'}: no single line {old!r}")
    (out / "config.ini").write_text(text.replace(old, f"conv_lookahead = {look}"))
    print(f"wrote {out}: {', '.join(changed)} now {a.frames} frame(s) longer; conv_lookahead = {look}")


if __name__ == "__main__":
    main()
