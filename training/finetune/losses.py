"""Losses for fine-tuning DeepFilterNet3 to keep speech and remove music.

All spectral terms only look at bins below `LOW_HZ` (7.5 kHz): the speech corpus is 16 kHz, so
at 48 kHz the speech target is empty above 8 kHz and a plain loss would teach the model to
remove everything up there, also the real speech of a full-band input. Above 7.5 kHz the ERB
gains are instead distilled from the original DeepFilterNet3 (teacher) on the same input
(`hf_distill_loss`), so the high band behaves like the released model.
"""
from __future__ import annotations

import torch

LOW_HZ = 7500.0
C = 0.3  # magnitude compression (DeepFilterNet's spectral losses)


def _compress(spec: torch.Tensor, c: float = C, eps: float = 1e-12):
    # sqrt(re^2 + im^2 + eps^2), not abs(): torch's complex abs() has a NaN gradient at exactly 0
    # (frames before the start, silent inputs), which once turned every weight into NaN.
    r = torch.view_as_real(spec)
    mag = torch.sqrt((r ** 2).sum(-1) + eps * eps)
    return mag ** c, spec * (mag ** (c - 1))


def spectral_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """DeepFilterNet's SpectralLoss: MSE of compressed magnitudes plus of compressed complex values."""
    em, ec = _compress(est)
    rm, rc = _compress(ref)
    return ((em - rm) ** 2).mean() + (torch.view_as_real(ec - rc) ** 2).mean()


def over_suppression_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The part of the compressed-magnitude error where the output is quieter than the speech:
    mean(relu(|ref|^c - |est|^c)^2). Added on top of `spectral_loss`, it weighs removed speech
    more than kept music (the asymmetric loss of VoiceFilter-Lite), against speech damage at
    low speech-to-music ratios."""
    em, _ = _compress(est)
    rm, _ = _compress(ref)
    return (torch.relu(rm - em) ** 2).mean()


def multires_loss(y: torch.Tensor, s: torch.Tensor, ffts=(256, 512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss on waveforms [B, N] (compressed magnitude + complex)."""
    total = y.new_zeros(())
    for n in ffts:
        w = torch.hann_window(n, dtype=y.dtype)
        Y = torch.stft(y, n, n // 4, window=w, return_complex=True)
        S = torch.stft(s, n, n // 4, window=w, return_complex=True)
        total = total + spectral_loss(Y, S)
    return total / len(ffts)


def music_only_frames(active: torch.Tensor, conv_lookahead: int) -> torch.Tensor:
    """[B, T] bool: the output frames with no speech-active hop within 5 frames (50 ms), given
    per-hop speech activity `active` [B, T] and the model's output delay in frames."""
    near = torch.nn.functional.max_pool1d(active.float()[:, None], 11, 1, 5)[:, 0] > 0
    near = torch.nn.functional.pad(near, (conv_lookahead, 0), value=True)[:, : near.shape[1]]
    return ~near


def music_only_loss(enh: torch.Tensor, mix: torch.Tensor, mo_frames: torch.Tensor,
                    floor_db: float = -60.0) -> torch.Tensor:
    """Output-to-mixture energy ratio (dB) over music-only frames, per item, above a floor:
    pushes the bench's music-only attenuation down. enh/mix [B, T, F'], mo_frames [B, T] bool."""
    w = mo_frames.float()
    e_out = ((torch.view_as_real(enh) ** 2).sum((-1, -2)) * w).sum(-1)
    e_mix = ((torch.view_as_real(mix) ** 2).sum((-1, -2)) * w).sum(-1)
    has = w.sum(-1) > 0
    if not bool(has.any()):
        return enh.real.new_zeros(())
    ratio_db = 10 * torch.log10((e_out + 1e-12) / (e_mix + 1e-12))
    return (torch.relu(ratio_db[has] - floor_db) / -floor_db).mean()


def lsnr_target(speech_spec: torch.Tensor, music_spec: torch.Tensor) -> torch.Tensor:
    """Per-frame local SNR in dB clamped to the model's range [-15, 35] ([B, T])."""
    es = (torch.view_as_real(speech_spec) ** 2).sum((-1, -2))
    em = (torch.view_as_real(music_spec) ** 2).sum((-1, -2))
    return (10 * torch.log10((es + 1e-12) / (em + 1e-12))).clamp(-15.0, 35.0)


def lsnr_loss(lsnr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((lsnr[..., 0] - target) ** 2).mean() / 100.0


def hf_distill_loss(m: torch.Tensor, m_teacher: torch.Tensor, first_band: int) -> torch.Tensor:
    return ((m[..., first_band:] - m_teacher[..., first_band:]) ** 2).mean()


def neg_si_sdr_loss(y: torch.Tensor, s: torch.Tensor, min_energy: float = 1e-6) -> torch.Tensor:
    """-SI-SDR in dB of waveforms y against s ([B, N]), averaged over the items that have speech
    (an item without speech has no SI-SDR; the music-only term covers it). The benchmark's main
    metric, so the gains are pulled toward what it rewards (the spectral terms weigh quiet bins
    up through their magnitude compression)."""
    es = (s * s).sum(-1)
    has = es > min_energy
    if not bool(has.any()):
        return y.new_zeros(())
    y, s, es = y[has], s[has], es[has]
    a = (y * s).sum(-1, keepdim=True) / es[:, None]
    t = a * s
    e = y - t
    return -(10 * torch.log10(((t * t).sum(-1) + 1e-9) / ((e * e).sum(-1) + 1e-9))).mean()


def _third_octave_matrix(sr: int, n_fft: int, n_bands: int = 15, f_lo: float = 150.0) -> torch.Tensor:
    """[n_bands, n_fft // 2 + 1] 0/1 matrix summing FFT-bin powers into STOI's one-third-octave
    bands (centres 150 Hz * 2^(k/3), edges a sixth of an octave either side)."""
    f = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sr / n_fft
    k = torch.arange(n_bands, dtype=torch.float64)
    centre = f_lo * 2.0 ** (k / 3.0)
    lo, hi = centre * 2.0 ** (-1 / 6), centre * 2.0 ** (1 / 6)
    return ((f[None] >= lo[:, None]) & (f[None] < hi[:, None])).float()


def stoi_loss(y: torch.Tensor, s: torch.Tensor, sr: int = 48000, min_frames: int = 30) -> torch.Tensor:
    """1 - STOI of waveforms y against s ([B, N]), differentiable, averaged over the items with
    at least `min_frames` speech frames (a surrogate of the benchmark's STOI, computed at `sr`
    instead of resampling to 10 kHz): frames of 25.6 ms every 12.8 ms (Hann), silent frames of
    the clean speech (more than 40 dB under its loudest) dropped from both, one-third-octave band
    envelopes from 150 Hz, and in every 30-frame window of each band the correlation of the clean
    envelope with the output's (scaled to the clean one's norm and clipped at 15 dB over it)."""
    win = int(round(0.0256 * sr))
    hop = win // 2
    n_fft = 2 * win
    w = torch.hann_window(win + 2, periodic=False, dtype=y.dtype)[1:-1]
    bands = _third_octave_matrix(sr, n_fft).to(y.dtype)
    clip = 1.0 + 10.0 ** (15.0 / 20.0)
    eps = 1e-8
    scores = []
    for yi, si in zip(y, s):
        fs = si.unfold(0, win, hop) * w  # [T, win]
        fy = yi.unfold(0, win, hop) * w
        e_db = 10 * torch.log10((fs * fs).sum(-1) + 1e-20)
        keep = e_db > e_db.max() - 40.0
        if int(keep.sum()) < min_frames or float(e_db.max()) < -100:
            continue
        S = torch.fft.rfft(fs[keep], n_fft).abs() ** 2  # [T', F]
        Y = torch.fft.rfft(fy[keep], n_fft)
        Y = torch.view_as_real(Y).pow(2).sum(-1)
        xs = torch.sqrt(S @ bands.T + eps).T  # [J, T']
        ys = torch.sqrt(Y @ bands.T + eps).T
        xs = xs.unfold(1, min_frames, 1)  # [J, M, 30]
        ys = ys.unfold(1, min_frames, 1)
        alpha = xs.norm(dim=-1, keepdim=True) / (ys.norm(dim=-1, keepdim=True) + eps)
        yc = torch.minimum(alpha * ys, clip * xs)
        xc = xs - xs.mean(-1, keepdim=True)
        yc = yc - yc.mean(-1, keepdim=True)
        d = (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1) + eps)
        scores.append(d.mean())
    if not scores:
        return y.new_zeros(())
    return 1.0 - torch.stack(scores).mean()
