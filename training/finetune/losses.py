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
