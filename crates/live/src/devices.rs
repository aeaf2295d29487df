//! Audio devices: listing them, and finding the one a user named.
//!
//! Everything goes through cpal. On Linux the PulseAudio host (which PipeWire serves through
//! pipewire-pulse) comes first: it lists sinks, sources, and each sink's monitor source, which is
//! how "everything the computer plays" is captured there. On Windows, WASAPI lets an output device
//! be opened as an input (loopback capture); cpal does that when an input stream is built on an
//! output device.

use std::fmt;

use cpal::traits::{DeviceTrait, HostTrait};

use crate::LiveError;

/// What a device can be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A capture device (microphone, line in, virtual cable output).
    Input,
    /// A playback device (speakers, headphones, virtual cable input).
    Output,
    /// A capture device that hears what an output device plays (PulseAudio monitor source).
    Monitor,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Input => "input",
            Role::Output => "output",
            Role::Monitor => "monitor",
        })
    }
}

/// One device as `nomusic devices` shows it.
#[derive(Clone)]
pub struct DeviceEntry {
    /// Stable id: `<host>:<host's own id>` (for PulseAudio the sink/source name).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Audio host (PulseAudio, ALSA, WASAPI, ...).
    pub host: String,
    pub role: Role,
    /// Default device of its role on its host.
    pub is_default: bool,
    /// Can be captured as loopback (WASAPI output devices).
    pub loopback: bool,
    /// Native format: rate, channels, sample format.
    pub native: Option<(u32, u16, String)>,
    pub device: cpal::Device,
}

impl fmt::Debug for DeviceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish()
    }
}

/// Which way a device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Capture,
    Playback,
}

fn device_id(device: &cpal::Device) -> Option<String> {
    device.id().ok().map(|id| id.to_string())
}

fn is_monitor_id(id: &str) -> bool {
    id.ends_with(".monitor")
}

/// Lists the devices of the default host (PulseAudio/PipeWire when running, else ALSA on Linux;
/// WASAPI on Windows), and with `all_hosts` those of every other available host after them.
pub fn list(all_hosts: bool) -> Result<Vec<DeviceEntry>, LiveError> {
    let default_host = cpal::default_host();
    let mut hosts = vec![default_host.id()];
    if all_hosts {
        hosts.extend(
            cpal::available_hosts()
                .into_iter()
                .filter(|h| *h != default_host.id()),
        );
    }
    let mut out = Vec::new();
    for host_id in hosts {
        if host_id == default_host.id() {
            out.extend(list_on(&default_host));
        } else if let Ok(host) = cpal::host_from_id(host_id) {
            out.extend(list_on(&host));
        }
    }
    Ok(out)
}

/// The devices of one host (a host kept open can be asked again without a new connection).
pub fn list_on(host: &cpal::Host) -> Vec<DeviceEntry> {
    let mut out = Vec::new();
    let default_in = host.default_input_device().as_ref().and_then(device_id);
    let default_out = host.default_output_device().as_ref().and_then(device_id);
    let Ok(devices) = host.devices() else {
        return out;
    };
    for device in devices {
        let Some(id) = device_id(&device) else {
            continue;
        };
        let name = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| id.clone());
        let host_name = host.id().name().to_string();
        if device.supports_output() {
            let native = device
                .default_output_config()
                .ok()
                .map(|c| (c.sample_rate(), c.channels(), c.sample_format().to_string()));
            out.push(DeviceEntry {
                is_default: default_out.as_deref() == Some(id.as_str()),
                loopback: cfg!(target_os = "windows"),
                id: id.clone(),
                name: name.clone(),
                host: host_name.clone(),
                role: Role::Output,
                native,
                device: device.clone(),
            });
        }
        if device.supports_input() {
            let native = device
                .default_input_config()
                .ok()
                .map(|c| (c.sample_rate(), c.channels(), c.sample_format().to_string()));
            out.push(DeviceEntry {
                is_default: default_in.as_deref() == Some(id.as_str()),
                loopback: false,
                role: if is_monitor_id(&id) {
                    Role::Monitor
                } else {
                    Role::Input
                },
                id,
                name,
                host: host_name,
                native,
                device,
            });
        }
    }
    out
}

/// The id of the default output device of the default host, and the id of the capture device
/// that hears it (its monitor on PulseAudio, the device itself on WASAPI).
pub fn default_loopback(devices: &[DeviceEntry]) -> Result<(String, DeviceEntry), LiveError> {
    let host = cpal::default_host();
    let out = host
        .default_output_device()
        .as_ref()
        .and_then(device_id)
        .ok_or_else(|| LiveError::Device("there is no default output device to capture".into()))?;
    if cfg!(target_os = "windows") {
        let entry = devices
            .iter()
            .find(|d| d.id == out && d.role == Role::Output)
            .cloned()
            .ok_or_else(|| LiveError::Device(format!("default output {out} not listed")))?;
        return Ok((out, entry));
    }
    let monitor = format!("{out}.monitor");
    match devices.iter().find(|d| d.id == monitor) {
        Some(d) => Ok((out, d.clone())),
        None => Err(LiveError::Device(format!(
            "`--input loopback` captures the default output's monitor ({monitor}), but there is \
             none: loopback capture needs PulseAudio or PipeWire (pipewire-pulse) on Linux and \
             WASAPI on Windows. Pick a capture device with `--input` (see `nomusic devices`)."
        ))),
    }
}

/// Finds the device a user named: `default`, an exact id (with or without the host prefix), or a
/// unique case-insensitive part of a name or id. Only devices usable for `want` are candidates.
pub fn select<'a>(
    devices: &'a [DeviceEntry],
    spec: &str,
    want: Want,
) -> Result<&'a DeviceEntry, LiveError> {
    let usable = |d: &&DeviceEntry| match want {
        Want::Capture => d.role != Role::Output || d.loopback,
        Want::Playback => d.role == Role::Output,
    };
    let what = match want {
        Want::Capture => "input",
        Want::Playback => "output",
    };
    let candidates: Vec<&DeviceEntry> = devices.iter().filter(usable).collect();
    // Devices of the default host come first in `list`, so on ties the default host wins.
    if spec.eq_ignore_ascii_case("default") {
        // The default host's default device (a monitor is never "the default input").
        let first_host = candidates.first().map(|d| d.host.clone());
        if let Some(d) = candidates.iter().find(|d| {
            d.is_default && d.role != Role::Monitor && Some(&d.host) == first_host.as_ref()
        }) {
            return Ok(d);
        }
        return Err(LiveError::Device(format!(
            "there is no default {what} device"
        )));
    }
    let exact: Vec<&DeviceEntry> = candidates
        .iter()
        .copied()
        .filter(|d| d.id == spec || d.id.split_once(':').map(|(_, rest)| rest) == Some(spec))
        .collect();
    if let Some(first) = exact.first() {
        // A bare id may exist on two hosts; the default host's comes first.
        return Ok(first);
    }
    let needle = spec.to_lowercase();
    let default_host = candidates.first().map(|d| d.host.clone());
    let matching: Vec<&DeviceEntry> = candidates
        .iter()
        .copied()
        .filter(|d| {
            d.name.to_lowercase().contains(&needle) || d.id.to_lowercase().contains(&needle)
        })
        .collect();
    // Prefer matches on the default host (ALSA also lists PulseAudio's devices as "pulse").
    let on_default: Vec<&DeviceEntry> = matching
        .iter()
        .copied()
        .filter(|d| Some(&d.host) == default_host.as_ref())
        .collect();
    let pick = if on_default.is_empty() {
        matching
    } else {
        on_default
    };
    match pick.len() {
        1 => Ok(pick[0]),
        0 => Err(LiveError::Device(format!(
            "no {what} device matches {spec:?}. {what} devices:\n{}",
            describe(&candidates)
        ))),
        _ => Err(LiveError::Device(format!(
            "{spec:?} matches {} {what} devices; name one by its id:\n{}",
            pick.len(),
            describe(&pick)
        ))),
    }
}

fn describe(devices: &[&DeviceEntry]) -> String {
    devices
        .iter()
        .map(|d| format!("  {}  ({})", d.id, d.name))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The output device a capture device hears, if it is a monitor or loopback: then playing to it
/// would feed nomusic's own output back into its input.
pub fn captured_output_id(capture: &DeviceEntry) -> Option<String> {
    match capture.role {
        Role::Monitor => capture.id.strip_suffix(".monitor").map(str::to_string),
        Role::Output if capture.loopback => Some(capture.id.clone()),
        _ => None,
    }
}
