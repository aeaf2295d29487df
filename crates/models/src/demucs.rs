//! HTDemucs models from the registry: which checkpoints a run loads, and loading them.
//!
//! HTDemucs is offline (it needs the whole recording, in segments of 7.8 s with overlap), so it
//! is not a streaming [`crate::Separator`]; the file pipeline drives it through
//! [`nomusic_htdemucs::Separator`]. `htdemucs` is one model giving every stem. `htdemucs_ft`
//! is a bag of four models with one-hot weights: each is kept for its own stem only, so the
//! speech (the vocals stem) needs only the vocals model, and all four stems need four passes,
//! one model loaded at a time.

use std::path::PathBuf;

use nomusic_htdemucs::candle_core::Device;
use nomusic_htdemucs::Separator;

use crate::registry::{LocatedModel, ModelKind};
use crate::ModelError;

/// The stem that is the speech.
pub const SPEECH_STEM: &str = "vocals";

/// One model run over the whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemucsPass {
    /// The checkpoint (`.th` or `.safetensors`).
    pub checkpoint: PathBuf,
    /// The stem this model is kept for; `None`: every stem it gives.
    pub stem: Option<&'static str>,
}

/// The passes that give the speech (`all_stems == false`) or every stem.
pub fn passes(located: &LocatedModel, all_stems: bool) -> Result<Vec<DemucsPass>, ModelError> {
    let ModelKind::HtDemucs { stems } = located.spec.kind else {
        return Err(ModelError::Invalid {
            path: located.files.first().cloned().unwrap_or_default(),
            reason: format!("{} is not an HTDemucs model", located.spec.name),
        });
    };
    if stems.is_empty() {
        return Ok(vec![DemucsPass {
            checkpoint: located.files[0].clone(),
            stem: None,
        }]);
    }
    Ok(stems
        .iter()
        .zip(&located.files)
        .filter(|(s, _)| all_stems || **s == SPEECH_STEM)
        .map(|(s, f)| DemucsPass {
            checkpoint: f.clone(),
            stem: Some(*s),
        })
        .collect())
}

/// Loads one checkpoint on the CPU and checks that it gives the stems the pass needs.
pub fn load(pass: &DemucsPass) -> Result<Separator, ModelError> {
    let sep = Separator::from_checkpoint(&pass.checkpoint, &Device::Cpu)?;
    let need = pass.stem.unwrap_or(SPEECH_STEM);
    if !sep.sources().iter().any(|s| s == need) {
        return Err(ModelError::Invalid {
            path: pass.checkpoint.clone(),
            reason: format!(
                "the model gives the stems {}, not \"{need}\"",
                sep.sources().join(", ")
            ),
        });
    }
    Ok(sep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn located(name: &str) -> LocatedModel {
        let spec = registry::find(name).unwrap();
        LocatedModel {
            spec,
            files: spec.files.iter().map(|f| PathBuf::from(f.name)).collect(),
        }
    }

    #[test]
    fn speech_from_the_bag_loads_only_the_vocals_model() {
        let p = passes(&located("htdemucs_ft"), false).unwrap();
        assert_eq!(
            p,
            [DemucsPass {
                checkpoint: "04573f0d-f3cf25b2.th".into(),
                stem: Some("vocals")
            }]
        );
        let all = passes(&located("htdemucs_ft"), true).unwrap();
        let stems: Vec<_> = all.iter().map(|p| p.stem.unwrap()).collect();
        assert_eq!(stems, ["drums", "bass", "other", "vocals"]);
        assert!(all[0].checkpoint.to_string_lossy().starts_with("f7e0c4bc"));
    }

    #[test]
    fn the_single_model_is_one_pass_for_everything() {
        for all in [false, true] {
            let p = passes(&located("htdemucs"), all).unwrap();
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].stem, None);
        }
        assert!(passes(&located("gtcrn"), false).is_err());
    }
}
