//! Linux: a null sink named "nomusic", the VB-Cable of PulseAudio/PipeWire.
//!
//! Apps play into it, nomusic captures its monitor and plays the speech to the real output, so
//! nothing is heard twice. Created with `pactl load-module module-null-sink` (pactl ships with
//! both PulseAudio and PipeWire's pipewire-pulse), removed again when the value is dropped, which
//! also happens on Ctrl-C because the CLI turns that into a normal return.

use std::process::Command;

use crate::LiveError;

/// A null sink that lives as long as this value.
pub struct VirtualSink {
    pub name: String,
    module: u32,
    /// Streams moved into the sink: (sink-input index, sink it came from).
    moved: Vec<(u32, String)>,
    /// Default sink before `--move-streams` made this one the default.
    previous_default: Option<String>,
}

fn pactl(args: &[&str]) -> Result<String, LiveError> {
    let out = Command::new("pactl").args(args).output().map_err(|e| {
        LiveError::VirtualSink(format!(
            "cannot run pactl ({e}): install pulseaudio-utils (PulseAudio) or pipewire-pulse \
             (PipeWire), or route with a device of your own (`--input`)"
        ))
    })?;
    if !out.status.success() {
        return Err(LiveError::VirtualSink(format!(
            "pactl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (index, name) of every sink.
fn sinks() -> Result<Vec<(u32, String)>, LiveError> {
    Ok(pactl(&["list", "short", "sinks"])?
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.parse().ok()?, f.next()?.to_string()))
        })
        .collect())
}

impl VirtualSink {
    /// Creates the sink (unloading a leftover one of the same name from a killed run first).
    pub fn create(name: &str) -> Result<Self, LiveError> {
        for line in pactl(&["list", "short", "modules"])?.lines() {
            let mut f = line.split('\t');
            let (Some(idx), Some(module), Some(args)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if module == "module-null-sink"
                && args
                    .split_whitespace()
                    .any(|a| a == format!("sink_name={name}"))
            {
                pactl(&["unload-module", idx])?;
            }
        }
        let out = pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
            &format!("sink_properties=device.description={name}"),
        ])?;
        let module = out.trim().parse().map_err(|_| {
            LiveError::VirtualSink(format!("unexpected answer from pactl load-module: {out:?}"))
        })?;
        Ok(Self {
            name: name.to_string(),
            module,
            moved: Vec::new(),
            previous_default: None,
        })
    }

    /// The device id of the sink's monitor (what nomusic captures).
    pub fn monitor_id(&self) -> String {
        format!("{}.monitor", self.name)
    }

    /// Makes the sink the default output and moves every playing stream into it; both are
    /// undone on drop. Returns how many streams were moved.
    pub fn move_streams(&mut self) -> Result<usize, LiveError> {
        let default = pactl(&["get-default-sink"])?.trim().to_string();
        pactl(&["set-default-sink", &self.name])?;
        self.previous_default = Some(default);
        let names = sinks()?;
        for line in pactl(&["list", "short", "sink-inputs"])?.lines() {
            let mut f = line.split('\t');
            let (Some(idx), Some(sink)) = (f.next(), f.next()) else {
                continue;
            };
            let (Ok(idx), Ok(sink)) = (idx.parse::<u32>(), sink.parse::<u32>()) else {
                continue;
            };
            let Some((_, from)) = names.iter().find(|(i, _)| *i == sink) else {
                continue;
            };
            if *from == self.name {
                continue;
            }
            pactl(&["move-sink-input", &idx.to_string(), &self.name])?;
            self.moved.push((idx, from.clone()));
        }
        Ok(self.moved.len())
    }
}

impl Drop for VirtualSink {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous_default {
            let _ = pactl(&["set-default-sink", previous]);
        }
        for (idx, from) in &self.moved {
            let _ = pactl(&["move-sink-input", &idx.to_string(), from]);
        }
        // Streams still in the sink move to the default sink when it goes away.
        let _ = pactl(&["unload-module", &self.module.to_string()]);
    }
}
