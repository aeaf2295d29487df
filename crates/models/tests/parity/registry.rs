//! The latency that `nomusic models` lists for each streaming model is the one its runner
//! reports (and the parity tests check the runner's against the speech delay).

use std::path::PathBuf;

use nomusic_models::registry::{self, ModelDirs};

use crate::common::model_path;

#[test]
fn listed_latency_is_the_runners() {
    let dirs = ModelDirs {
        search: vec![model_path("")],
        cache: PathBuf::from("/nonexistent/nomusic-cache"),
    };
    let mut checked = Vec::new();
    for spec in registry::all().iter().filter(|s| !s.kind.is_offline()) {
        let located = dirs
            .locate(spec)
            .unwrap_or_else(|e| panic!("{}: not in the shared models: {e}", spec.name));
        let model = registry::build(&located).unwrap();
        let ms = model.latency_frames() as f32 * 1000.0 / model.sample_rate_hz() as f32;
        assert_eq!(spec.latency_ms, Some(ms), "{}", spec.name);
        checked.push(spec.name);
    }
    assert_eq!(checked, ["nomusic", "deepfilternet3", "dtln", "gtcrn"]);
}
