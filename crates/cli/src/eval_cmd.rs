//! `nomusic eval`: scores one estimate against its clean reference.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use nomusic_audio_io::read_all;
use nomusic_dsp::metrics;
use nomusic_dsp::resample::StreamResampler;
use serde_json::json;

use crate::args::EvalArgs;

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let (rate, reference) = load_mono(&args.reference, None)?;
    let (_, estimate) = load_mono(&args.estimate, Some(rate))?;
    let estimate = metrics::fit_to_length(&estimate, reference.len());
    let (si_sdr, _) = metrics::si_sdr(&estimate, &reference);
    let stoi = metrics::stoi(&reference, &estimate, rate).context("STOI")?;
    let mut out = json!({ "si_sdr": si_sdr, "stoi": stoi });
    if let Some(mix_path) = &args.mixture {
        let (_, mix) = load_mono(mix_path, Some(rate))?;
        if mix.len() != reference.len() {
            bail!(
                "the mixture has {} samples and the reference {}: they must be the same recording",
                mix.len(),
                reference.len()
            );
        }
        let music: Vec<f32> = mix.iter().zip(&reference).map(|(m, s)| m - s).collect();
        let mask = music_only_from_reference(&reference, rate);
        let m = metrics::score_item(&estimate, &reference, &music, &mix, &mask, rate)
            .context("scoring")?;
        out["si_sdri"] = m.si_sdri.into();
        out["resid_db"] = m.resid_db.into();
        out["mo_atten_db"] = m.mo_atten_db.into();
    }
    if args.json {
        println!("{out}");
    } else {
        for (k, label) in [
            ("si_sdr", "SI-SDR (dB)"),
            ("si_sdri", "SI-SDRi (dB)"),
            ("resid_db", "residual (dB)"),
            ("mo_atten_db", "music-only attenuation (dB)"),
            ("stoi", "STOI"),
        ] {
            if let Some(v) = out.get(k).and_then(|v| v.as_f64()) {
                println!("{label:<30} {v:.3}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a file as mono (channel mean), resampled to `rate` when given.
fn load_mono(path: &Path, rate: Option<u32>) -> Result<(u32, Vec<f32>)> {
    let (info, planar) = read_all(path).with_context(|| format!("reading {}", path.display()))?;
    let n = planar.first().map_or(0, Vec::len);
    let c = planar.len().max(1) as f32;
    let mono: Vec<f32> = (0..n)
        .map(|i| planar.iter().map(|ch| ch[i]).sum::<f32>() / c)
        .collect();
    let want = rate.unwrap_or(info.sample_rate_hz);
    if want == info.sample_rate_hz {
        return Ok((want, mono));
    }
    let mut r = StreamResampler::new(info.sample_rate_hz, want)?;
    let mut out = Vec::new();
    r.process(&mono, &mut out);
    r.process_silence(8192, &mut out);
    let skip = r.delay_frames();
    let len = (n as u64 * want as u64 / info.sample_rate_hz as u64) as usize;
    Ok((want, out[skip..skip + len].to_vec()))
}

/// Music-only samples when no manifest gives the speech turns: more than 50 ms away from any
/// 20 ms frame of the reference within 40 dB of its loudest frame.
fn music_only_from_reference(reference: &[f32], rate: u32) -> Vec<bool> {
    let frame = (rate as usize / 50).max(1);
    let energies: Vec<f32> = reference
        .chunks(frame)
        .map(|f| f.iter().map(|x| x * x).sum::<f32>() / f.len() as f32)
        .collect();
    let peak = energies.iter().cloned().fold(0.0f32, f32::max);
    let threshold = peak * 1e-4;
    let segments: Vec<(f64, f64)> = energies
        .iter()
        .enumerate()
        .filter(|(_, e)| **e > threshold && peak > 0.0)
        .map(|(i, _)| {
            let start = (i * frame) as f64 / rate as f64;
            (start, start + frame as f64 / rate as f64)
        })
        .collect();
    metrics::music_only_mask(reference.len(), &segments, rate)
}
