//! `CrossTransformerEncoder` (demucs/transformer.py): the cross-domain transformer between
//! the encoders and the decoders. Layers alternate self-attention (within each branch) and
//! cross-attention (each branch attends to the other), with pre-norm, LayerScale and a final
//! group norm per layer, as the release configures them.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use crate::cpu::{self, attention::attention, dense};
use crate::layers::{gelu, GroupNorm, LayerScale};
use crate::Result;

/// What the transformer needs from the model configuration.
#[derive(Debug, Clone)]
pub struct TransformerConfig {
    pub dim: usize,
    pub hidden_scale: f64,
    pub num_heads: usize,
    pub num_layers: usize,
    pub cross_first: bool,
    pub norm_in: bool,
    pub norm_first: bool,
    pub norm_out: bool,
    pub max_period: f64,
    pub layer_scale: bool,
    pub gelu: bool,
    pub weight_pos_embed: f64,
}

/// `nn.MultiheadAttention` (batch first) with its packed `in_proj_weight`.
#[derive(Debug, Clone)]
struct MultiheadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl MultiheadAttention {
    fn load(vb: VarBuilder, dim: usize, heads: usize) -> Result<Self> {
        let w = vb.get((3 * dim, dim), "in_proj_weight")?;
        let b = vb.get(3 * dim, "in_proj_bias")?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                w.narrow(0, i * dim, dim)?.contiguous()?,
                Some(b.narrow(0, i * dim, dim)?.contiguous()?),
            ))
        };
        let out = candle_nn::linear(dim, dim, vb.pp("out_proj"))?;
        Ok(Self {
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out,
            heads,
        })
    }

    /// The same on host rows: `q: (B * Nq, C)`, `kv: (B * Nk, C)`.
    fn forward_host(
        &self,
        q: &[f32],
        kv: &[f32],
        (b, nq, nk): (usize, usize, usize),
    ) -> Result<Vec<f32>> {
        let c = q.len() / (b * nq).max(1);
        let scale = 1.0 / ((c / self.heads) as f32).sqrt();
        let (qp, kp, vp) = (
            linear_host(&self.q, q)?,
            linear_host(&self.k, kv)?,
            linear_host(&self.v, kv)?,
        );
        let mut out = Vec::with_capacity(b * nq * c);
        for i in 0..b {
            let (qi, ki, vi) = (
                &qp[i * nq * c..][..nq * c],
                &kp[i * nk * c..][..nk * c],
                &vp[i * nk * c..][..nk * c],
            );
            out.extend(attention(qi, ki, vi, (nq, nk, c), self.heads, scale));
        }
        linear_host(&self.out, &out)
    }

    /// `q: (B, Nq, C)`, `kv: (B, Nk, C)` -> `(B, Nq, C)`
    fn forward(&self, q: &Tensor, kv: &Tensor) -> Result<Tensor> {
        let (b, nq, c) = q.dims3()?;
        let nk = kv.dim(1)?;
        let hd = c / self.heads;
        let split = |x: Tensor, n: usize| -> Result<Tensor> {
            Ok(x.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let qh = split((self.q.forward(q)? * scale)?, nq)?;
        let kh = split(self.k.forward(kv)?, nk)?;
        let vh = split(self.v.forward(kv)?, nk)?;
        // One head at a time bounds the (Nq, Nk) score matrix in memory.
        let mut outs = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            let qh = qh.narrow(1, h, 1)?;
            let kh = kh.narrow(1, h, 1)?;
            let vh = vh.narrow(1, h, 1)?;
            let att = qh.matmul(&kh.transpose(2, 3)?)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            outs.push(att.matmul(&vh)?);
        }
        let x = Tensor::cat(&outs, 1)?
            .transpose(1, 2)?
            .reshape((b, nq, c))?;
        Ok(self.out.forward(&x)?)
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    linear1: Linear,
    linear2: Linear,
    gelu: bool,
}

impl FeedForward {
    fn load(vb: &VarBuilder, cfg: &TransformerConfig) -> Result<Self> {
        let hidden = (cfg.dim as f64 * cfg.hidden_scale) as usize;
        Ok(Self {
            linear1: candle_nn::linear(cfg.dim, hidden, vb.pp("linear1"))?,
            linear2: candle_nn::linear(hidden, cfg.dim, vb.pp("linear2"))?,
            gelu: cfg.gelu,
        })
    }

    fn forward_host(&self, x: &[f32]) -> Result<Vec<f32>> {
        let mut h = linear_host(&self.linear1, x)?;
        if self.gelu {
            cpu::gelu_inplace(&mut h);
        } else {
            h.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        linear_host(&self.linear2, &h)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.linear1.forward(x)?;
        let h = if self.gelu { gelu(&h)? } else { h.relu()? };
        Ok(self.linear2.forward(&h)?)
    }
}

/// `nn.Linear` on host rows `(N, in)`.
fn linear_host(l: &Linear, x: &[f32]) -> Result<Vec<f32>> {
    let cin = l.weight().dim(1)?;
    match l.bias() {
        Some(bias) => cpu::with_all([l.weight(), bias], |[w, b]| {
            dense::linear(x, w, Some(b), cin)
        }),
        None => cpu::with_data(l.weight(), |w| dense::linear(x, w, None, cin)),
    }
}

/// `nn.LayerNorm` on host rows.
fn layer_norm_host(n: &LayerNorm, x: &[f32]) -> Result<Vec<f32>> {
    match n.bias() {
        Some(bias) if n.remove_mean() => cpu::with_all([n.weight(), bias], |[w, b]| {
            dense::layer_norm(x, w, b, n.eps() as f32)
        }),
        _ => Err(candle_core::Error::Msg("LayerNorm without bias on the CPU path".into()).into()),
    }
}

/// `x += gamma * y` (LayerScale'd residual) on host rows.
fn add_scaled_host(x: &mut [f32], y: &[f32], gamma: &Option<LayerScale>, c: usize) -> Result<()> {
    match gamma {
        Some(g) => cpu::with_data(g.scale(), |s| dense::add_scaled(x, y, Some(s), c)),
        None => {
            dense::add_scaled(x, y, None, c);
            Ok(())
        }
    }
}

fn maybe_scale(vb: VarBuilder, cfg: &TransformerConfig) -> Result<Option<LayerScale>> {
    Ok(if cfg.layer_scale {
        Some(LayerScale::load(vb, cfg.dim, true)?)
    } else {
        None
    })
}

fn apply_scale(scale: &Option<LayerScale>, x: Tensor) -> Result<Tensor> {
    match scale {
        Some(s) => s.forward(&x),
        None => Ok(x),
    }
}

/// One layer: self-attention (`MyTransformerEncoderLayer`) or cross-attention
/// (`CrossTransformerEncoderLayer`); `norm2` is the norm of the keys in the cross layer.
#[derive(Debug, Clone)]
struct Layer {
    attn: MultiheadAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: Option<LayerNorm>,
    norm_out: Option<GroupNorm>,
    gamma_1: Option<LayerScale>,
    gamma_2: Option<LayerScale>,
    norm_first: bool,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &TransformerConfig, cross: bool) -> Result<Self> {
        let attn_name = if cross { "cross_attn" } else { "self_attn" };
        let ln = |name: &str| candle_nn::layer_norm(cfg.dim, 1e-5, vb.pp(name));
        Ok(Self {
            attn: MultiheadAttention::load(vb.pp(attn_name), cfg.dim, cfg.num_heads)?,
            ff: FeedForward::load(&vb, cfg)?,
            norm1: ln("norm1")?,
            norm2: ln("norm2")?,
            norm3: if cross { Some(ln("norm3")?) } else { None },
            norm_out: if cfg.norm_first && cfg.norm_out {
                Some(GroupNorm::load(vb.pp("norm_out"), 1, cfg.dim, true)?)
            } else {
                None
            },
            gamma_1: maybe_scale(vb.pp("gamma_1"), cfg)?,
            gamma_2: maybe_scale(vb.pp("gamma_2"), cfg)?,
            norm_first: cfg.norm_first,
        })
    }

    /// The pre-norm layer on the CPU: host buffers from input to output, one pass per
    /// step outside the matrix products.
    fn forward_cpu(&self, x: &Tensor, kv: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let mut xd = cpu::to_vec(x)?;
        let q = layer_norm_host(&self.norm1, &xd)?;
        let a = match kv {
            Some(kv) if self.norm3.is_some() => {
                let kvn = layer_norm_host(&self.norm2, &cpu::to_vec(kv)?)?;
                self.attn.forward_host(&q, &kvn, (b, n, kv.dim(1)?))?
            }
            _ => self.attn.forward_host(&q, &q, (b, n, n))?,
        };
        drop(q);
        add_scaled_host(&mut xd, &a, &self.gamma_1, c)?;
        let ff_norm = self.norm3.as_ref().unwrap_or(&self.norm2);
        let f = self.ff.forward_host(&layer_norm_host(ff_norm, &xd)?)?;
        add_scaled_host(&mut xd, &f, &self.gamma_2, c)?;
        let y = cpu::tensor(xd, (b, n, c))?;
        match &self.norm_out {
            Some(norm) => norm.forward(&y),
            None => Ok(y),
        }
    }

    /// Self-attention when `kv` is `None`, else cross-attention to `kv`.
    fn forward(&self, x: &Tensor, kv: Option<&Tensor>) -> Result<Tensor> {
        if self.norm_first && cpu::fast(x) && kv.is_none_or(cpu::fast) {
            return self.forward_cpu(x, kv);
        }
        let cross = self.norm3.is_some();
        if self.norm_first {
            let q = self.norm1.forward(x)?;
            let a = match kv {
                Some(kv) if cross => self.attn.forward(&q, &self.norm2.forward(kv)?)?,
                _ => self.attn.forward(&q, &q)?,
            };
            let x = (x + apply_scale(&self.gamma_1, a)?)?;
            let ff_norm = self.norm3.as_ref().unwrap_or(&self.norm2);
            let f = self.ff.forward(&ff_norm.forward(&x)?)?;
            let x = (&x + apply_scale(&self.gamma_2, f)?)?;
            match &self.norm_out {
                Some(n) => n.forward(&x),
                None => Ok(x),
            }
        } else {
            let a = match kv {
                Some(kv) if cross => self.attn.forward(x, kv)?,
                _ => self.attn.forward(x, x)?,
            };
            let x = self.norm1.forward(&(x + apply_scale(&self.gamma_1, a)?)?)?;
            let f = self.ff.forward(&x)?;
            Ok(self
                .norm2
                .forward(&(&x + apply_scale(&self.gamma_2, f)?)?)?)
        }
    }
}

/// `create_sin_embedding(length, dim)` as `(length, dim)`, computed in f32 like PyTorch.
fn sin_embedding(length: usize, dim: usize, max_period: f64, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let max_period = max_period as f32;
    let mut data = Vec::with_capacity(length * dim);
    for t in 0..length {
        let phases: Vec<f32> = (0..half)
            .map(|i| t as f32 / max_period.powf(i as f32 / (half as f32 - 1.0)))
            .collect();
        data.extend(phases.iter().map(|p| p.cos()));
        data.extend(phases.iter().map(|p| p.sin()));
    }
    Ok(Tensor::from_vec(data, (length, dim), device)?)
}

/// `create_2d_sin_embedding(dim, height=F, width=T)` rearranged to `(T * F, dim)`, the
/// token order of the frequency branch (`b c fr t1 -> b (t1 fr) c`).
fn sin_embedding_2d(
    dim: usize,
    freqs: usize,
    frames: usize,
    max_period: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let div: Vec<f32> = (0..half)
        .step_by(2)
        .map(|i| (i as f32 * -((max_period as f32).ln() / half as f32)).exp())
        .collect();
    let mut data = vec![0f32; frames * freqs * dim];
    for t in 0..frames {
        for f in 0..freqs {
            let row = &mut data[(t * freqs + f) * dim..][..dim];
            for (j, d) in div.iter().enumerate() {
                row[2 * j] = (t as f32 * d).sin();
                row[2 * j + 1] = (t as f32 * d).cos();
                row[half + 2 * j] = (f as f32 * d).sin();
                row[half + 2 * j + 1] = (f as f32 * d).cos();
            }
        }
    }
    Ok(Tensor::from_vec(data, (frames * freqs, dim), device)?)
}

#[derive(Debug, Clone)]
pub struct CrossTransformerEncoder {
    cfg: TransformerConfig,
    norm_in: Option<(LayerNorm, LayerNorm)>,
    layers: Vec<Layer>,
    layers_t: Vec<Layer>,
}

impl CrossTransformerEncoder {
    pub fn load(vb: VarBuilder, cfg: &TransformerConfig) -> Result<Self> {
        let norm_in = if cfg.norm_in {
            Some((
                candle_nn::layer_norm(cfg.dim, 1e-5, vb.pp("norm_in"))?,
                candle_nn::layer_norm(cfg.dim, 1e-5, vb.pp("norm_in_t"))?,
            ))
        } else {
            None
        };
        let classic_parity = usize::from(cfg.cross_first);
        let (mut layers, mut layers_t) = (Vec::new(), Vec::new());
        for idx in 0..cfg.num_layers {
            let cross = idx % 2 != classic_parity;
            layers.push(Layer::load(vb.pp("layers").pp(idx), cfg, cross)?);
            layers_t.push(Layer::load(vb.pp("layers_t").pp(idx), cfg, cross)?);
        }
        Ok(Self {
            cfg: cfg.clone(),
            norm_in,
            layers,
            layers_t,
        })
    }

    /// `x: (B, C, F, T1)` (frequency branch), `xt: (B, C, T2)` (time branch).
    pub fn forward(&self, x: &Tensor, xt: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, fr, t1) = x.dims4()?;
        let t2 = xt.dim(2)?;
        let dev = x.device();
        let w = self.cfg.weight_pos_embed;
        let mut x = x.permute((0, 3, 2, 1))?.reshape((b, t1 * fr, c))?;
        let mut xt = xt.transpose(1, 2)?.contiguous()?;
        if let Some((n, nt)) = &self.norm_in {
            x = n.forward(&x)?;
            xt = nt.forward(&xt)?;
        }
        let pos = (sin_embedding_2d(c, fr, t1, self.cfg.max_period, dev)? * w)?;
        let x_dtype = x.dtype();
        let mut x = x.broadcast_add(&pos.to_dtype(x_dtype)?.unsqueeze(0)?)?;
        let pos_t = (sin_embedding(t2, c, self.cfg.max_period, dev)? * w)?;
        let mut xt = xt.broadcast_add(&pos_t.to_dtype(DType::F32)?.unsqueeze(0)?)?;
        for (l, lt) in self.layers.iter().zip(&self.layers_t) {
            if l.norm3.is_none() {
                x = l.forward(&x, None)?;
                xt = lt.forward(&xt, None)?;
            } else {
                let old_x = x.clone();
                x = l.forward(&x, Some(&xt))?;
                xt = lt.forward(&xt, Some(&old_x))?;
            }
        }
        let x = x
            .reshape((b, t1, fr, c))?
            .permute((0, 3, 2, 1))?
            .contiguous()?;
        let xt = xt.transpose(1, 2)?.contiguous()?;
        Ok((x, xt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_embedding_matches_torch() {
        // create_sin_embedding(3, 4)[:, 0]:
        // [[1, 1, 0, 0], [0.5403, 1, 0.8415, 0.0001], [-0.4161, 1, 0.9093, 0.0002]]
        let e = sin_embedding(3, 4, 10000.0, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let want = [
            [1.0, 1.0, 0.0, 0.0],
            [0.5403, 1.0, 0.8415, 0.0001],
            [-0.4161, 1.0, 0.9093, 0.0002],
        ];
        for (r, w) in e.iter().zip(want) {
            for (a, b) in r.iter().zip(w) {
                assert!((a - b).abs() < 1e-4, "{r:?} vs {w:?}");
            }
        }
    }
}
