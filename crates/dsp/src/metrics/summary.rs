//! Means of the per-item metrics over buckets of items (all, per SMR, music with vocals), and
//! the markdown table score.py prints.

use super::ItemMetrics;
use std::fmt;

/// The SMR buckets of the dev set (`smr_target_db` in its manifest), which score.py hard-codes.
pub const DEV_SMR_BUCKETS_DB: [f64; 3] = [-5.0, 0.0, 5.0];

/// One scored item with what the buckets select on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredItem {
    /// The item's target speech-to-music ratio [dB].
    pub smr_db: f64,
    /// Whether the item's music has vocals.
    pub vocals: bool,
    pub metrics: ItemMetrics,
}

/// A group of items that a [`Summary`] averages over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bucket {
    All,
    /// Items whose `smr_db` equals this value exactly.
    Smr(f64),
    /// Items whose music has vocals.
    VocalMusic,
}

impl Bucket {
    fn contains(&self, item: &ScoredItem) -> bool {
        match *self {
            Bucket::All => true,
            Bucket::Smr(db) => item.smr_db == db,
            Bucket::VocalMusic => item.vocals,
        }
    }
}

/// Written as score.py's keys: `all`, `-5.0`, `0.0`, `5.0`, `vocal_music`.
impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bucket::All => f.write_str("all"),
            // Debug keeps the ".0" that Python's str(float) writes.
            Bucket::Smr(db) => write!(f, "{db:?}"),
            Bucket::VocalMusic => f.write_str("vocal_music"),
        }
    }
}

/// Means of the metrics over one bucket. NaN values are skipped as numpy's `nanmean` does; a
/// mean over no value is NaN (`None` for `mo_atten_db`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub bucket: Bucket,
    /// Number of items in the bucket.
    pub n: usize,
    pub si_sdr: f64,
    pub si_sdri: f64,
    pub resid_db: f64,
    pub mo_atten_db: Option<f64>,
    pub stoi: f64,
}

fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Summaries in score.py's order: all items, each of `smr_buckets_db` (pass
/// [`DEV_SMR_BUCKETS_DB`] to match score.py), then the items with vocals in their music. Empty
/// buckets are left out, as score.py does.
pub fn summarize(items: &[ScoredItem], smr_buckets_db: &[f64]) -> Vec<Summary> {
    let buckets = std::iter::once(Bucket::All)
        .chain(smr_buckets_db.iter().map(|&db| Bucket::Smr(db)))
        .chain(std::iter::once(Bucket::VocalMusic));
    buckets
        .filter_map(|bucket| {
            let sel: Vec<&ItemMetrics> = items
                .iter()
                .filter(|item| bucket.contains(item))
                .map(|item| &item.metrics)
                .collect();
            if sel.is_empty() {
                return None;
            }
            let mean = |f: fn(&ItemMetrics) -> f64| nan_mean(sel.iter().map(|m| f(m)));
            let mo_atten = mean(|m| m.mo_atten_db.unwrap_or(f64::NAN));
            Some(Summary {
                bucket,
                n: sel.len(),
                si_sdr: mean(|m| m.si_sdr),
                si_sdri: mean(|m| m.si_sdri),
                resid_db: mean(|m| m.resid_db),
                mo_atten_db: (!mo_atten.is_nan()).then_some(mo_atten),
                stoi: mean(|m| m.stoi),
            })
        })
        .collect()
}

/// Python's rendering of a float with a fixed number of decimals (`nan`, `inf` spelled its way).
fn py_fixed(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// The markdown table score.py prints, one row per summary, with the same columns and decimals.
/// PESQ is not computed in Rust: its column reads `n/a`.
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| bucket | n | SI-SDR | SI-SDRi | resid dB | MO-att dB | STOI | PESQ |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | n/a |\n",
            s.bucket,
            s.n,
            py_fixed(s.si_sdr, 2),
            py_fixed(s.si_sdri, 2),
            py_fixed(s.resid_db, 1),
            py_fixed(s.mo_atten_db.unwrap_or(f64::NAN), 1),
            py_fixed(s.stoi, 3),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(smr_db: f64, vocals: bool, si_sdr: f64, mo: Option<f64>) -> ScoredItem {
        ScoredItem {
            smr_db,
            vocals,
            metrics: ItemMetrics {
                si_sdr,
                si_sdri: si_sdr + 2.0,
                resid_db: -si_sdr,
                mo_atten_db: mo,
                stoi: 0.5,
            },
        }
    }

    #[test]
    fn buckets_follow_score_py() {
        let items = [
            item(-5.0, false, 1.0, Some(-10.0)),
            item(0.0, true, 3.0, None),
            item(-5.0, false, 5.0, Some(-20.0)),
        ];
        let s = summarize(&items, &DEV_SMR_BUCKETS_DB);
        let labels: Vec<String> = s.iter().map(|s| s.bucket.to_string()).collect();
        assert_eq!(labels, ["all", "-5.0", "0.0", "vocal_music"]);
        assert_eq!(s[0].n, 3);
        assert_eq!(s[0].si_sdr, 3.0);
        assert_eq!(s[0].mo_atten_db, Some(-15.0));
        assert_eq!(s[1].si_sdri, 5.0);
        assert_eq!(s[2].mo_atten_db, None);
        assert_eq!(s[3].n, 1);
    }

    #[test]
    fn table_has_score_py_columns() {
        let items = [item(0.0, false, 1.234, None)];
        let table = summary_table(&summarize(&items, &DEV_SMR_BUCKETS_DB));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| bucket | n | SI-SDR | SI-SDRi | resid dB | MO-att dB | STOI | PESQ |"
        );
        assert_eq!(
            lines[2],
            "| all | 1 | 1.23 | 3.23 | -1.2 | nan | 0.500 | n/a |"
        );
        assert_eq!(
            lines[3],
            "| 0.0 | 1 | 1.23 | 3.23 | -1.2 | nan | 0.500 | n/a |"
        );
        assert_eq!(lines.len(), 4);
    }
}
