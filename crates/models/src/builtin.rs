//! The weights compiled into the binary: nomusic's own model, the default (`--model nomusic`).
//!
//! DeepFilterNet3's three ONNX graphs with weights fine-tuned by `training/finetune` to keep
//! speech and remove music (sung vocals included), and DeepFilterNet3's unchanged `config.ini`;
//! they run on the DeepFilterNet3 runner. Provenance, data, licences and scores: docs/MODEL.md.
//! The files live in `crates/models/assets/nomusic/` (licence and attribution beside them).

/// Each file of the built-in model, by the name the runner expects.
pub const NOMUSIC_FILES: [(&str, &[u8]); 4] = [
    ("enc.onnx", include_bytes!("../assets/nomusic/enc.onnx")),
    (
        "erb_dec.onnx",
        include_bytes!("../assets/nomusic/erb_dec.onnx"),
    ),
    (
        "df_dec.onnx",
        include_bytes!("../assets/nomusic/df_dec.onnx"),
    ),
    ("config.ini", include_bytes!("../assets/nomusic/config.ini")),
];

/// Bytes the built-in weights add to the binary.
pub fn size_bytes() -> u64 {
    NOMUSIC_FILES.iter().map(|(_, b)| b.len() as u64).sum()
}
