//! The downloader against a real HTTP server on loopback serving ../shared/models (or a
//! temporary folder): complete, truncated, corrupted and resumed downloads, by full sha256 and
//! by the sha256 prefix that demucs publishes. Nothing may ever be half-installed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use nomusic_models::fetch::{fetch, sha256_file, FetchEvent, Source};
use nomusic_models::registry::{
    self, Checksum, FileSize, ModelDirs, ModelFile, ModelKind, ModelSpec,
};

fn shared_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

/// A minimal HTTP/1.1 file server. Paths are `/<mode>/<model>/<file>`; mode `ok` serves the
/// file (honouring `Range: bytes=N-`), `truncate` promises the whole file but hangs up halfway,
/// `corrupt` serves the right length with flipped bytes, `corrupt2` corrupts only DTLN's
/// second file.
struct Server {
    base: String,
    ranges_seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        Self::start_at(shared_models())
    }

    /// Serves `<root>/<model>/<file>`.
    fn start_at(root: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ranges_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges_seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let root = root.clone();
                thread::spawn(move || serve(stream, &seen, &root));
            }
        });
        Self { base, ranges_seen }
    }

    fn mirror(&self, mode: &str) -> Source {
        Source::Mirror(format!("{}/{mode}", self.base))
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<String>>, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            seen.lock().unwrap().push(v.trim().to_string());
            range_start = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (mode, model, file) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let Ok(mut body) = std::fs::read(root.join(model).join(file)) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if mode == "corrupt" || (mode == "corrupt2" && file == "model_2.onnx") {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    let start = if mode == "ok" {
        range_start.unwrap_or(0)
    } else {
        0
    };
    let (status, slice) = if start > 0 {
        ("206 Partial Content", &body[start..])
    } else {
        ("200 OK", &body[..])
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        slice.len()
    );
    let _ = stream.write_all(header.as_bytes());
    if mode == "truncate" {
        let _ = stream.write_all(&slice[..slice.len() / 2]);
        let _ = stream.flush();
        return; // hang up early
    }
    let _ = stream.write_all(slice);
}

fn no_progress() -> impl FnMut(FetchEvent<'_>) {
    |_| {}
}

#[test]
fn complete_download_is_verified_and_installed() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let spec = registry::find("gtcrn").unwrap();
    let mut events = Vec::new();
    let dir = fetch(spec, cache.path(), &server.mirror("ok"), &mut |e| {
        events.push(format!("{e:?}"))
    })
    .unwrap();
    assert_eq!(dir, cache.path().join("gtcrn"));
    assert!(events.iter().any(|e| e.contains("Verified")));
    let dirs = ModelDirs {
        search: vec![],
        cache: cache.path().to_path_buf(),
    };
    let found = dirs.locate(spec).unwrap();
    assert_eq!(
        std::fs::read(&found.files[0]).unwrap(),
        std::fs::read(shared_models().join("gtcrn/gtcrn.onnx")).unwrap()
    );
    assert!(!cache.path().join("gtcrn.partial").exists());
    // A second fetch finds it intact and downloads nothing.
    let again = fetch(spec, cache.path(), &server.mirror("ok"), &mut no_progress()).unwrap();
    assert_eq!(again, dir);
}

#[test]
fn truncated_download_is_rejected_then_resumed() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let spec = registry::find("gtcrn").unwrap();
    let err = fetch(
        spec,
        cache.path(),
        &server.mirror("truncate"),
        &mut no_progress(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("gtcrn.onnx"), "{msg}");
    assert!(
        !cache.path().join("gtcrn").exists(),
        "nothing installed after a truncated download"
    );
    let part = cache.path().join("gtcrn.partial/gtcrn.onnx.part");
    let have = std::fs::metadata(&part).unwrap().len();
    assert!(have > 0 && have < spec.files[0].size.bytes());

    fetch(spec, cache.path(), &server.mirror("ok"), &mut no_progress()).unwrap();
    assert!(
        server
            .ranges_seen
            .lock()
            .unwrap()
            .contains(&format!("{have}-")),
        "the second fetch resumed with a range request"
    );
    let installed = cache.path().join("gtcrn/gtcrn.onnx");
    assert_eq!(
        std::fs::read(installed).unwrap(),
        std::fs::read(shared_models().join("gtcrn/gtcrn.onnx")).unwrap()
    );
}

#[test]
fn corrupted_download_is_rejected_and_removed() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let spec = registry::find("gtcrn").unwrap();
    let msg = fetch(
        spec,
        cache.path(),
        &server.mirror("corrupt"),
        &mut no_progress(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("sha256"), "{msg}");
    assert!(!cache.path().join("gtcrn").exists());
    assert!(
        !cache.path().join("gtcrn.partial/gtcrn.onnx.part").exists(),
        "bad bytes are not kept for resuming"
    );
}

#[test]
fn multi_file_model_is_all_or_nothing() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let spec = registry::find("dtln").unwrap();
    assert!(fetch(
        spec,
        cache.path(),
        &server.mirror("corrupt2"),
        &mut no_progress()
    )
    .is_err());
    assert!(
        !cache.path().join("dtln").exists(),
        "first file alone is not an installed model"
    );
    let dirs = ModelDirs {
        search: vec![],
        cache: cache.path().to_path_buf(),
    };
    assert!(dirs.locate(spec).is_err());
    fetch(spec, cache.path(), &server.mirror("ok"), &mut no_progress()).unwrap();
    assert_eq!(dirs.locate(spec).unwrap().files.len(), 2);
}

#[test]
fn unreachable_server_gives_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let spec = registry::find("gtcrn").unwrap();
    // Port 9 on loopback: nothing listens there.
    let msg = fetch(
        spec,
        cache.path(),
        &Source::Mirror("http://127.0.0.1:9".into()),
        &mut no_progress(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("download of http://127.0.0.1:9/gtcrn/gtcrn.onnx failed"),
        "{msg}"
    );
    assert!(!cache.path().join("gtcrn").exists());
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A model published the demucs way (`<signature>-<first 8 hex digits of sha256>.th`, no
/// exact size), its one file written under `root/demo/`.
fn prefix_model(root: &Path) -> &'static ModelSpec {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let dir = root.join("demo");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("content");
    std::fs::write(&tmp, &content).unwrap();
    let prefix = leak(sha256_file(&tmp).unwrap()[..8].to_string());
    let name = leak(format!("abcd0123-{prefix}.th"));
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    let files = Box::leak(Box::new([ModelFile {
        name,
        url: "https://example.invalid/never-used",
        checksum: Checksum::Sha256Prefix(prefix),
        size: FileSize::About(content.len() as u64),
    }]));
    Box::leak(Box::new(ModelSpec {
        name: "demo",
        aliases: &[],
        kind: ModelKind::HtDemucs { stems: &[] },
        description: "test",
        sample_rate_hz: 44_100,
        latency_ms: None,
        licence: "MIT",
        files,
        builtin: false,
    }))
}

#[test]
fn prefix_checksum_is_verified_and_a_cut_download_resumes() {
    let root = tempfile::tempdir().unwrap();
    let spec = prefix_model(root.path());
    let server = Server::start_at(root.path().to_path_buf());
    let file = spec.files[0].name;

    // Right length, wrong bytes: rejected by the prefix, nothing kept.
    let cache = tempfile::tempdir().unwrap();
    let msg = fetch(
        spec,
        cache.path(),
        &server.mirror("corrupt"),
        &mut no_progress(),
    )
    .unwrap_err()
    .to_string();
    let Checksum::Sha256Prefix(prefix) = spec.files[0].checksum else {
        unreachable!()
    };
    assert!(msg.contains("sha256") && msg.contains(prefix), "{msg}");
    assert!(!cache.path().join("demo").exists());

    // The size is not known exactly: a cut connection is caught by the server's length,
    // then resumed.
    let err = fetch(
        spec,
        cache.path(),
        &server.mirror("truncate"),
        &mut no_progress(),
    );
    assert!(err.is_err());
    assert!(!cache.path().join("demo").exists());
    let dir = fetch(spec, cache.path(), &server.mirror("ok"), &mut no_progress()).unwrap();
    assert_eq!(
        std::fs::read(dir.join(file)).unwrap(),
        std::fs::read(root.path().join("demo").join(file)).unwrap()
    );
    assert!(!server.ranges_seen.lock().unwrap().is_empty(), "resumed");
}

#[test]
fn htdemucs_fetch_checks_the_published_prefix() {
    // Bytes that are not the release file, served under its name.
    let root = tempfile::tempdir().unwrap();
    let spec = registry::find("htdemucs").unwrap();
    let dir = root.path().join("htdemucs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(spec.files[0].name), b"not the release checkpoint").unwrap();
    let server = Server::start_at(root.path().to_path_buf());
    let cache = tempfile::tempdir().unwrap();
    let msg = fetch(spec, cache.path(), &server.mirror("ok"), &mut no_progress())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("8726e21a"), "{msg}");
    assert!(!cache.path().join("htdemucs").exists());
}
