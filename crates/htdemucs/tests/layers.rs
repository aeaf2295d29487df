//! Layer-level parity with PyTorch demucs 4.1.0.
//!
//! `tests/data/tiny.safetensors` holds a small HTDemucs (8 channels, 3 transformer layers,
//! 0.2 s segment; every block type of the release) with seeded random weights under the
//! PyTorch keys, plus the inputs and outputs of each block recorded by forward hooks during
//! one PyTorch forward pass (`ref.<module>.in<i>` / `ref.<module>.out<i>`). It is made by
//! `tools/htdemucs/make_reference.py fixtures`, in short:
//!
//! ```python
//! model = HTDemucs(**TINY_KWARGS); randomize(model, 1234); model.eval()
//! for i, layer in enumerate(model.encoder): layer.register_forward_hook(record(f"encoder.{i}"))
//! ...  # decoder, tencoder, tdecoder, crosstransformer
//! mix = 0.3 * torch.randn(1, 2, length - 1000, generator=torch.Generator().manual_seed(7))
//! y = model(mix)  # ref.forward.out0
//! ```
//!
//! Normal CI runs these without PyTorch.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use nomusic_htdemucs::{HtDemucs, HtDemucsConfig};

/// Relative RMS error allowed between our outputs and PyTorch's.
const REL_TOL: f32 = 1e-4;

struct Fixture {
    tensors: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
    model: HtDemucs,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny.safetensors");
    let bytes = std::fs::read(path).expect("fixture present");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let meta = meta.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).expect("fixture tensors");
    let cfg = HtDemucsConfig::from_json(&meta["config"]).expect("config");
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let model = HtDemucs::load(vb, &cfg).expect("model loads");
    Fixture {
        tensors,
        meta,
        model,
    }
}

impl Fixture {
    fn t(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no {name}"))
    }

    fn int(&self, name: &str) -> usize {
        self.meta[name].parse().expect("integer metadata")
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let diff = (got - want)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    let norm = want
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    let rel = diff / norm.max(1e-12);
    println!("{what}: relative RMS error {rel:.2e}");
    assert!(
        rel <= REL_TOL,
        "{what}: relative RMS error {rel:.2e} > {REL_TOL:.0e}"
    );
}

#[test]
fn frequency_encoders_match_pytorch() {
    let f = fixture();
    let (enc, _) = f.model.encoders();
    for (i, layer) in enc.iter().enumerate().skip(1) {
        let y = layer
            .forward(f.t(&format!("ref.encoder.{i}.in0")), None)
            .unwrap();
        assert_close(
            &format!("encoder.{i}"),
            &y,
            f.t(&format!("ref.encoder.{i}.out0")),
        );
    }
}

#[test]
fn time_encoders_match_pytorch() {
    let f = fixture();
    let (_, tenc) = f.model.encoders();
    for (i, layer) in tenc.iter().enumerate() {
        let y = layer
            .forward(f.t(&format!("ref.tencoder.{i}.in0")), None)
            .unwrap();
        assert_close(
            &format!("tencoder.{i}"),
            &y,
            f.t(&format!("ref.tencoder.{i}.out0")),
        );
    }
}

#[test]
fn frequency_decoders_match_pytorch() {
    let f = fixture();
    let (dec, _) = f.model.decoders();
    for (i, layer) in dec.iter().enumerate().take(dec.len() - 1) {
        let p = format!("ref.decoder.{i}");
        let (y, _) = layer
            .forward(
                f.t(&format!("{p}.in0")),
                Some(f.t(&format!("{p}.in1"))),
                f.int(&format!("{p}.in2")),
            )
            .unwrap();
        assert_close(&format!("decoder.{i}"), &y, f.t(&format!("{p}.out0")));
    }
}

#[test]
fn time_decoders_match_pytorch() {
    let f = fixture();
    let (_, tdec) = f.model.decoders();
    for (i, layer) in tdec.iter().enumerate() {
        let p = format!("ref.tdecoder.{i}");
        let (y, _) = layer
            .forward(
                f.t(&format!("{p}.in0")),
                Some(f.t(&format!("{p}.in1"))),
                f.int(&format!("{p}.in2")),
            )
            .unwrap();
        assert_close(&format!("tdecoder.{i}"), &y, f.t(&format!("{p}.out0")));
    }
}

#[test]
fn cross_transformer_matches_pytorch() {
    let f = fixture();
    let tr = f.model.transformer().expect("tiny model has a transformer");
    let (x, xt) = tr
        .forward(
            f.t("ref.crosstransformer.in0"),
            f.t("ref.crosstransformer.in1"),
        )
        .unwrap();
    assert_close("crosstransformer.x", &x, f.t("ref.crosstransformer.out0"));
    assert_close("crosstransformer.xt", &xt, f.t("ref.crosstransformer.out1"));
}

#[test]
fn stft_matches_pytorch() {
    let f = fixture();
    let mix: Vec<Vec<Vec<f32>>> = f.t("ref.spec.in0").to_vec3().unwrap();
    let mag = f.model.spec(&mix).unwrap(); // (1, 2C, F, T), [re, im] per channel
    let want = f.t("ref.spec.out0"); // (1, C, F, T, 2)
    let (b, c, fq, t, _) = want.dims5().unwrap();
    let want = want
        .permute((0, 1, 4, 2, 3))
        .unwrap()
        .reshape((b, 2 * c, fq, t))
        .unwrap();
    assert_close("spec", &mag, &want);
}

#[test]
fn full_forward_matches_pytorch() {
    let f = fixture();
    let y = f.model.forward(f.t("ref.forward.in0")).unwrap();
    assert_close("forward", &y, f.t("ref.forward.out0"));
}
