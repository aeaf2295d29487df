//! A checkpoint that is truncated, has the wrong signature or misses weights fails with an
//! error that names the problem.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use nomusic_htdemucs::{Checkpoint, Error, HtDemucsConfig};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny.safetensors");

fn weights_and_config() -> (HashMap<String, Tensor>, HtDemucsConfig) {
    let bytes = std::fs::read(FIXTURE).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cfg = HtDemucsConfig::from_json(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    tensors.retain(|k, _| !k.starts_with("ref."));
    (tensors, cfg)
}

#[test]
fn complete_fixture_loads() {
    let model = Checkpoint::read(FIXTURE)
        .unwrap()
        .into_model(&Device::Cpu)
        .unwrap();
    assert_eq!(model.config().sources.len(), 4);
}

#[test]
fn truncated_safetensors_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(FIXTURE).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Checkpoint::read(&path).err().expect("must fail");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncated_th_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.th");
    // The start of a zip archive (what torch.save writes) whose end is missing.
    std::fs::write(&path, b"PK\x03\x04\x14\x00\x00\x00\x00\x00archive/data.pkl").unwrap();
    let err = Checkpoint::read(&path).err().expect("must fail");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

#[test]
fn wrong_signature_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // demucs release names end in the first 8 hex digits of the file's sha256.
    let path = dir.path().join("955717e8-00000000.th");
    std::fs::copy(FIXTURE, &path).unwrap();
    let err = Checkpoint::read(&path).err().expect("must fail");
    match &err {
        Error::Signature {
            expected, actual, ..
        } => {
            assert_eq!(expected, "00000000");
            assert_eq!(actual.len(), 8);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("wrong signature"), "{err}");
}

#[test]
fn missing_weights_are_all_named() {
    let (mut tensors, cfg) = weights_and_config();
    tensors.remove("encoder.1.conv.weight");
    tensors.remove("crosstransformer.layers_t.1.cross_attn.in_proj_weight");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = Checkpoint::read_safetensors_with(&path, cfg)
        .unwrap()
        .into_model(&Device::Cpu)
        .err()
        .expect("must fail");
    match &err {
        Error::MissingKeys { missing, .. } => {
            assert_eq!(missing.len(), 2, "{missing:?}");
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("encoder.1.conv.weight"), "{text}");
    assert!(
        text.contains("crosstransformer.layers_t.1.cross_attn.in_proj_weight"),
        "{text}"
    );
}

#[test]
fn safetensors_without_config_asks_for_one() {
    let (tensors, _) = weights_and_config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noconfig.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = Checkpoint::read(&path).err().expect("must fail");
    assert!(err.to_string().contains("config"), "{err}");
}
