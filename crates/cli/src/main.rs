//! `nomusic`: removes background music and keeps speech.
fn main() -> anyhow::Result<()> {
    Ok(())
}
