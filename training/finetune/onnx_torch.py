"""Run an ONNX graph as a trainable PyTorch module (just the ops DeepFilterNet3's graphs use).

The graph is interpreted node by node in eager PyTorch. Float initializers and large float
`Constant` nodes (the GRU weights are stored as constants in DeepFilterNet3's export) become
`nn.Parameter`s; shape arithmetic (Shape, Gather, Concat of int64 tensors, ...) runs in numpy.
`export()` writes the trained values back into a copy of the original graph, so the exported
file has exactly the original nodes, input/output names and shapes, only new weights.

Why not onnx2torch: it has no GRU converter; DeepFilterNet3's three graphs hold four GRUs.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

# Float constants with at least this many elements are trained (weights, not scalars).
MIN_PARAM_NUMEL = 16


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _safe(name: str) -> str:
    return "p_" + "".join(c if c.isalnum() else "_" for c in name)


class OnnxModule(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.model = onnx.load(path)
        g = self.model.graph
        self.inputs = [i.name for i in g.input]
        self.outputs = [o.name for o in g.output]
        self.param_names: dict[str, str] = {}  # onnx tensor name -> attribute name
        self.consts: dict[str, object] = {}
        for init in g.initializer:
            self._add(init.name, numpy_helper.to_array(init))
        self.nodes = []
        for node in g.node:
            at = _attrs(node)
            if node.op_type == "Constant":
                self._add(node.output[0], numpy_helper.to_array(at["value"]))
                continue
            self.nodes.append((node.op_type, list(node.input), list(node.output), at))

    def _add(self, name, arr):
        if arr.dtype == np.float32 and arr.size >= MIN_PARAM_NUMEL:
            attr = _safe(name)
            self.register_parameter(attr, torch.nn.Parameter(torch.from_numpy(arr.copy())))
            self.param_names[name] = attr
        elif arr.dtype == np.float32:
            self.consts[name] = torch.from_numpy(arr.copy())
        else:
            self.consts[name] = arr

    def forward(self, *args):
        env: dict[str, object] = dict(zip(self.inputs, args))
        env.update(self.consts)
        for onnx_name, attr in self.param_names.items():
            env[onnx_name] = getattr(self, attr)
        for op, ins, outs, at in self.nodes:
            x = [env[i] if i else None for i in ins]
            res = getattr(self, "_op_" + op)(x, at)
            if not isinstance(res, tuple):
                res = (res,)
            for name, r in zip(outs, res):
                env[name] = r
        return tuple(env[o] for o in self.outputs)

    # ---- ops -------------------------------------------------------------------------
    @staticmethod
    def _t(v):
        return torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v

    def _op_Add(self, x, at):
        if all(isinstance(v, np.ndarray) for v in x):
            return x[0] + x[1]
        return self._t(x[0]) + self._t(x[1])

    def _op_Mul(self, x, at):
        if all(isinstance(v, np.ndarray) for v in x):
            return x[0] * x[1]
        return self._t(x[0]) * self._t(x[1])

    def _op_MatMul(self, x, at):
        return torch.matmul(x[0], x[1])

    def _op_Einsum(self, x, at):
        eq = at["equation"].decode()
        return torch.einsum(eq, *x)

    def _op_Relu(self, x, at):
        return torch.relu(x[0])

    def _op_Sigmoid(self, x, at):
        return torch.sigmoid(x[0])

    def _op_Tanh(self, x, at):
        return torch.tanh(x[0])

    def _op_Cast(self, x, at):
        to = at["to"]
        v = x[0]
        if to == onnx.TensorProto.FLOAT:
            return self._t(v).float()
        if to == onnx.TensorProto.INT64:
            if isinstance(v, torch.Tensor):
                return v.detach().numpy().astype(np.int64)
            return np.asarray(v).astype(np.int64)
        raise NotImplementedError(f"Cast to {to}")

    def _op_Shape(self, x, at):
        return np.array(x[0].shape, dtype=np.int64)

    def _op_ConstantOfShape(self, x, at):
        val = numpy_helper.to_array(at["value"]) if "value" in at else np.zeros(1, np.float32)
        shape = [int(s) for s in x[0]]
        if val.dtype == np.float32:
            return torch.full(shape, float(val.reshape(-1)[0]))
        return np.full(shape, val.reshape(-1)[0], dtype=val.dtype)

    def _op_Concat(self, x, at):
        axis = at["axis"]
        if all(isinstance(v, np.ndarray) for v in x):
            return np.concatenate(x, axis=axis)
        return torch.cat([self._t(v) for v in x], dim=axis)

    def _op_Reshape(self, x, at):
        shape = [int(s) for s in x[1]]
        data = x[0]
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        if isinstance(data, np.ndarray):
            return data.reshape(shape)
        return data.reshape(shape)

    def _op_Transpose(self, x, at):
        perm = at["perm"]
        if isinstance(x[0], np.ndarray):
            return x[0].transpose(perm)
        return x[0].permute(*perm)

    def _op_Squeeze(self, x, at):
        axes = at.get("axes") if len(x) < 2 or x[1] is None else [int(a) for a in x[1]]
        v = x[0]
        if isinstance(v, np.ndarray):
            return np.squeeze(v, axis=tuple(axes))
        for a in sorted([a % v.dim() for a in axes], reverse=True):
            v = v.squeeze(a)
        return v

    def _op_Unsqueeze(self, x, at):
        axes = at.get("axes") if len(x) < 2 or x[1] is None else [int(a) for a in x[1]]
        v = x[0]
        if isinstance(v, np.ndarray):
            return np.expand_dims(v, axis=tuple(axes))
        for a in sorted(axes):
            v = v.unsqueeze(a)
        return v

    def _op_Gather(self, x, at):
        axis = at.get("axis", 0)
        data, idx = x
        if isinstance(data, np.ndarray):
            return np.asarray(np.take(data, np.asarray(idx), axis=axis))
        idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return torch.index_select(data, axis, idx_t.reshape(-1)).reshape(
            data.shape[:axis] + tuple(idx_t.shape) + data.shape[axis + 1:]
        )

    def _op_Slice(self, x, at):
        data = x[0]
        starts, ends = [int(v) for v in x[1]], [int(v) for v in x[2]]
        axes = [int(v) for v in x[3]] if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in x[4]] if len(x) > 4 and x[4] is not None else [1] * len(starts)
        if isinstance(data, np.ndarray):
            sl = [slice(None)] * data.ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                sl[a] = slice(s, e, st)
            return data[tuple(sl)]
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st != 1:
                raise NotImplementedError("Slice step != 1 on float tensors")
            n = data.shape[a]
            s = max(min(s + n if s < 0 else s, n), 0)
            e = max(min(e + n if e < 0 else e, n), 0)
            data = data.narrow(a, s, max(e - s, 0))
        return data

    def _op_Pad(self, x, at):
        data = x[0]
        pads = [int(p) for p in x[1]]
        value = float(x[2]) if len(x) > 2 and x[2] is not None else 0.0
        if at.get("mode", b"constant") != b"constant":
            raise NotImplementedError("Pad mode")
        n = data.dim()
        tp = []
        for d in reversed(range(n)):
            tp += [pads[d], pads[d + n]]
        return F.pad(data, tp, value=value)

    def _op_Conv(self, x, at):
        inp, w = x[0], x[1]
        b = x[2] if len(x) > 2 else None
        p = at.get("pads", [0, 0, 0, 0])
        if p[0] != p[2] or p[1] != p[3]:
            inp = F.pad(inp, [p[1], p[3], p[0], p[2]])
            pad = (0, 0)
        else:
            pad = (p[0], p[1])
        return F.conv2d(inp, w, b, stride=tuple(at.get("strides", [1, 1])), padding=pad,
                        dilation=tuple(at.get("dilations", [1, 1])), groups=at.get("group", 1))

    def _op_ConvTranspose(self, x, at):
        inp, w = x[0], x[1]
        b = x[2] if len(x) > 2 else None
        p = at.get("pads", [0, 0, 0, 0])
        assert p[0] == p[2] and p[1] == p[3], "asymmetric ConvTranspose pads"
        return F.conv_transpose2d(
            inp, w, b, stride=tuple(at.get("strides", [1, 1])), padding=(p[0], p[1]),
            output_padding=tuple(at.get("output_padding", [0, 0])),
            groups=at.get("group", 1), dilation=tuple(at.get("dilations", [1, 1])))

    def _op_GRU(self, x, at):
        X, W, R, B = x[0], x[1], x[2], x[3]
        h0 = x[5] if len(x) > 5 and x[5] is not None else None
        H = at["hidden_size"]
        assert at.get("linear_before_reset", 0) == 1, "torch GRUs reset after the linear map"
        assert at.get("direction", b"forward") == b"forward" and W.shape[0] == 1
        # ONNX gate order z, r, h; torch's r, z, n.
        order = torch.cat([torch.arange(H, 2 * H), torch.arange(0, H), torch.arange(2 * H, 3 * H)])
        w_ih, w_hh = W[0][order], R[0][order]
        b_ih, b_hh = B[0, :3 * H][order], B[0, 3 * H:][order]
        if h0 is None:
            h0 = X.new_zeros(1, X.shape[1], H)
        y, hn = torch._VF.gru(X, h0, [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, self.training,
                              False, False)
        return y.unsqueeze(1), hn

    # ---- export ----------------------------------------------------------------------
    def export(self, path: str):
        """Writes the original graph with this module's current weights to `path`."""
        m = copy.deepcopy(self.model)
        vals = {n: getattr(self, a).detach().cpu().numpy().astype(np.float32)
                for n, a in self.param_names.items()}
        for init in m.graph.initializer:
            if init.name in vals:
                init.CopyFrom(numpy_helper.from_array(vals[init.name], init.name))
        for node in m.graph.node:
            if node.op_type == "Constant" and node.output[0] in vals:
                for a in node.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(numpy_helper.from_array(vals[node.output[0]], a.t.name))
        onnx.save(m, path)
