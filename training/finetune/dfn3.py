"""DeepFilterNet3 as nomusic runs it, in PyTorch: STFT, features, the three graphs, ERB gains,
deep filter and overlap-add synthesis.

Mirrors crates/models/src/dfn3 (itself libDF v0.5.6's `DfTract`), over whole sequences:
- STFT: Vorbis window, FFT 960, hop 480; frame t covers samples [480 (t - 1), 480 (t + 1)) of
  the input (the analysis buffer starts as zeros); spectrum scaled by
  wnorm = hop / (fft * sum(w^2)) = 1/960; synthesis: unnormalised inverse FFT, window, overlap-add.
- Features of frame t: ERB dB energies minus their exponential mean (alpha 0.99, initial state
  linspace(-60, -90) dB), divided by 40; the first 96 bins divided by the sqrt of their
  exponentially smoothed magnitude (initial linspace(0.001, 0.0001)).
- The graphs see features up to frame t; their outputs at t give the ERB gains for frame t - 2
  (conv_lookahead) and the deep-filter coefficients that combine frames t - 4 .. t into the
  first 96 bins of output frame t - 2 (df_order 5, df_lookahead 2). A model with more look-ahead
  (lookahead.py: conv_lookahead L > df_lookahead D) targets frame t - L, and its deep filter
  combines frames t - L - 4 + D .. t - L + D.
- Not modelled here (inference only): libDF's silence gate (hop mean square < 1e-7) and the
  local-SNR switches (lsnr < -15 dB: zero frame; > 35 dB: pass through; DF off above 35 dB).
  `Dfn3.forward(..., gate=True)` applies the lsnr switches for evaluation.
"""
from __future__ import annotations

import configparser
import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy.signal import lfilter

from onnx_torch import OnnxModule

GRAPHS = ("enc", "erb_dec", "df_dec")


def freq_to_erb(f):
    return 9.265 * math.log1p(f / (24.7 * 9.265))


def erb_to_freq(e):
    return 24.7 * 9.265 * (math.exp(e / 9.265) - 1.0)


def erb_band_widths(sr=48000, fft=960, nb_bands=32, min_bins=2):
    """Same as features.rs `erb_band_widths` (libDF `erb_fb`), in float32-equivalent steps."""
    f32 = np.float32
    bin_hz = f32(sr) / f32(fft)
    lo, hi = f32(freq_to_erb(0.0)), f32(freq_to_erb(sr // 2))
    step = (hi - lo) / f32(nb_bands)
    widths, prev, borrowed = [], 0, 0
    for i in range(nb_bands):
        edge = int(round(float(f32(erb_to_freq(float(lo + f32(i + 1) * step))) / bin_hz)))
        n = edge - prev - borrowed
        if n < min_bins:
            borrowed, n = min_bins - n, min_bins
        else:
            borrowed = 0
        widths.append(n)
        prev = edge
    widths[-1] += 1
    excess = max(sum(widths) - (fft // 2 + 1), 0)
    widths[-1] -= excess
    return widths


def norm_alpha(sr=48000, hop=480, tau=1.0):
    a = math.exp(-(hop / sr) / tau)
    p = 3
    while True:
        r = round(a * 10 ** p) / 10 ** p
        if r < 1.0:
            return r
        p += 1


def vorbis_window(n):
    i = np.arange(n, dtype=np.float64)
    return np.sin(0.5 * np.pi * np.sin(np.pi * (i + 0.5) / n) ** 2).astype(np.float32)


def stft_np(x: np.ndarray, fft: int) -> np.ndarray:
    """Unscaled numpy STFT with the runner's framing (Vorbis window `fft`, hop fft/2, one hop of
    zeros in front), for analysis scripts; `istft_np` inverts it exactly (the window is
    power-complementary at hop fft/2)."""
    hop = fft // 2
    x = np.concatenate([np.zeros(hop), x, np.zeros(fft)])
    frames = np.lib.stride_tricks.sliding_window_view(x, fft)[::hop]
    return np.fft.rfft(frames * vorbis_window(fft), axis=-1)


def istft_np(spec: np.ndarray, n: int, fft: int) -> np.ndarray:
    """Inverse of `stft_np`: the first `n` samples of the overlap-added, windowed frames."""
    hop = fft // 2
    frames = np.fft.irfft(spec, n=fft, axis=-1) * vorbis_window(fft)
    out = np.zeros(hop * (len(frames) + 1))
    for i, f in enumerate(frames):
        out[i * hop:i * hop + fft] += f
    return out[hop:hop + n]


class Dfn3(torch.nn.Module):
    def __init__(self, model_dir: str | os.PathLike):
        super().__init__()
        self.dir = Path(model_dir)
        cfg = configparser.ConfigParser()
        cfg.read(self.dir / "config.ini")
        df = cfg["df"]
        self.sr, self.fft, self.hop = int(df["sr"]), int(df["fft_size"]), int(df["hop_size"])
        self.nb_erb, self.nb_df = int(df["nb_erb"]), int(df["nb_df"])
        self.df_order, self.df_lookahead = int(df["df_order"]), int(df["df_lookahead"])
        self.conv_lookahead = int(cfg["deepfilternet"]["conv_lookahead"])
        if not (self.df_order == 5 and 0 <= self.df_lookahead <= self.conv_lookahead):
            raise ValueError(f"{self.dir}: df_order {self.df_order}, df_lookahead {self.df_lookahead}, "
                             f"conv_lookahead {self.conv_lookahead}: need order 5 and df <= conv look-ahead")
        self.alpha = norm_alpha(self.sr, self.hop, float(df["norm_tau"]))
        self.widths = erb_band_widths(self.sr, self.fft, self.nb_erb, int(df["min_nb_erb_freqs"]))
        self.register_buffer("window", torch.from_numpy(vorbis_window(self.fft)), persistent=False)
        self.wnorm = self.hop / (self.fft * float((self.window.double() ** 2).sum()))
        self.register_buffer("band_of_bin", torch.repeat_interleave(
            torch.arange(self.nb_erb), torch.tensor(self.widths)), persistent=False)
        self.enc = OnnxModule(str(self.dir / "enc.onnx"))
        self.erb_dec = OnnxModule(str(self.dir / "erb_dec.onnx"))
        self.df_dec = OnnxModule(str(self.dir / "df_dec.onnx"))

    # ---- signal side -------------------------------------------------------------------
    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N] (N a multiple of hop) -> complex [B, T, F], T = N / hop."""
        xp = torch.nn.functional.pad(x, (self.fft - self.hop, 0))
        frames = xp.unfold(-1, self.fft, self.hop)  # [B, T, fft]
        return torch.fft.rfft(frames * self.window, dim=-1) * self.wnorm

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """complex [B, T, F] -> [B, T * hop]: the hop each frame completes (delay fft - hop)."""
        frames = torch.fft.irfft(spec, n=self.fft, dim=-1) * self.fft * self.window  # unnormalised
        b, t, _ = frames.shape
        first, second = frames[..., : self.hop], frames[..., self.hop:]
        prev = torch.nn.functional.pad(second, (0, 0, 1, 0))[:, :t]
        return (first + prev).reshape(b, t * self.hop)

    def istft_low(self, spec: torch.Tensor, bins: int) -> torch.Tensor:
        """`istft` of `spec` with every bin from `bins` up set to zero: the band the losses and
        the scores look at."""
        return self.istft(torch.cat([spec[..., :bins], torch.zeros_like(spec[..., bins:])], -1))

    def features(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """complex [B, T, F] -> feat_erb [B, 1, T, 32], feat_spec [B, 2, T, 96] (no gradient)."""
        a = self.alpha
        with torch.no_grad():
            power = spec.real ** 2 + spec.imag ** 2
            band = torch.zeros(power.shape[:-1] + (self.nb_erb,), dtype=power.dtype)
            band.index_add_(-1, self.band_of_bin, power)
            band = band / torch.tensor(self.widths, dtype=power.dtype)
            db = (10 * torch.log10(band + 1e-10)).numpy().astype(np.float64)
            init = np.linspace(-60.0, -90.0, self.nb_erb)
            mean = lfilter([1 - a], [1, -a], db, axis=1, zi=(a * init)[None, None, :].repeat(db.shape[0], 0))[0]
            erb = ((db - mean) / 40).astype(np.float32)
            low = spec[..., : self.nb_df]
            mag = low.abs().numpy().astype(np.float64)
            init = np.linspace(0.001, 0.0001, self.nb_df)
            state = lfilter([1 - a], [1, -a], mag, axis=1, zi=(a * init)[None, None, :].repeat(mag.shape[0], 0))[0]
            unit = low / torch.from_numpy(np.sqrt(state).astype(np.float32))
            feat_spec = torch.stack([unit.real, unit.imag], dim=1)
        return torch.from_numpy(erb).unsqueeze(1), feat_spec.contiguous()

    # ---- network -----------------------------------------------------------------------
    def graphs(self, feat_erb, feat_spec):
        e0, e1, e2, e3, emb, c0, lsnr = self.enc(feat_erb, feat_spec)
        (m,) = self.erb_dec(emb, e3, e2, e1, e0)
        coefs = self.df_dec(emb, c0)[0]
        return m, coefs, lsnr

    def enhance(self, spec, m, coefs, lsnr=None):
        """Applies gains [B,1,T,32] and coefs [B,T,96,10] to spec [B,T,F]; frame t of the result
        is output frame t - conv_lookahead (zeros before the start)."""
        b, t, _ = spec.shape
        look = self.conv_lookahead
        # The deep filter's window ends `look - df_lookahead` frames before the newest one.
        front = self.df_order - 1 + look - self.df_lookahead
        xp = torch.nn.functional.pad(torch.view_as_real(spec), (0, 0, 0, 0, front, 0))
        xp = torch.view_as_complex(xp)  # xp[t + front] = spec[t]
        gains = m[:, 0][..., self.band_of_bin]  # [B, T, F]
        delayed = xp[:, front - look: front - look + t]  # spec[t - look]
        gained = delayed * gains
        c = coefs.reshape(b, t, self.nb_df, self.df_order, 2)
        c = torch.complex(c[..., 0], c[..., 1])
        win = torch.stack([xp[:, k: k + t, : self.nb_df] for k in range(self.df_order)], dim=-1)
        filt = (win * c).sum(-1)
        if lsnr is not None:  # the runner's local-SNR switches
            l = lsnr[:, :, 0][..., None]
            zero, passthru, no_df = l < -15, l > 35, l > 35
            gained = torch.where(zero, torch.zeros_like(gained), torch.where(passthru, delayed, gained))
            filt = torch.where(zero | no_df, gained[..., : self.nb_df], filt)
        return torch.cat([filt, gained[..., self.nb_df:]], dim=-1)

    def forward(self, x: torch.Tensor, gate: bool = False):
        """x [B, N] at 48 kHz -> dict(spec, enh (spectrum of output frames delayed by conv_lookahead), m, coefs, lsnr)."""
        spec = self.stft(x)
        fe, fs = self.features(spec)
        m, coefs, lsnr = self.graphs(fe, fs)
        enh = self.enhance(spec, m, coefs, lsnr if gate else None)
        return dict(spec=spec, enh=enh, m=m, coefs=coefs, lsnr=lsnr)

    def delay_spec(self, spec: torch.Tensor) -> torch.Tensor:
        """spec[t - conv_lookahead]: a target aligned with `enhance`'s output."""
        r = torch.view_as_real(spec)
        r = torch.nn.functional.pad(r, (0, 0, 0, 0, self.conv_lookahead, 0))[:, : spec.shape[1]]
        return torch.view_as_complex(r.contiguous())

    @property
    def latency(self) -> int:
        return self.fft - self.hop + self.conv_lookahead * self.hop

    def export(self, out_dir: str | os.PathLike):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in GRAPHS:
            getattr(self, name).export(str(out / f"{name}.onnx"))
        (out / "config.ini").write_bytes((self.dir / "config.ini").read_bytes())
