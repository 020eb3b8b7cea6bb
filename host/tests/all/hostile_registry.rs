//! Pulls from a registry that lies about sizes or stalls: a fake registry (raw HTTP/1.1 over a
//! tokio listener, so it can say and send whatever it likes) behind a real `Registry` client,
//! and behind `skiff serve` following a release file. No docker-registry needed.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use skiff::release::{Cache, MAX_MANIFEST_BYTES, PullError, PullLimits, Registry, RegistryOptions};
use skiff::service::digest_of;

use crate::fixtures::SkiffProcess;
use crate::helpers::{ScratchDir, component};
use crate::wait::{check, eventually};

/// What the fake registry answers for the manifest.
#[derive(Clone, Copy)]
enum ManifestAnswer {
    /// The manifest, as it is.
    Honest,
    /// That many bytes.
    Liar(u64),
}

/// What the fake registry answers for the component's blob.
#[derive(Clone, Copy)]
enum BlobAnswer {
    /// That many bytes, no `Content-Length` (the body ends when the connection does).
    Liar(u64),
    /// One byte, then nothing, the connection held open.
    StallAfterOneByte,
    /// A byte every `Duration`: never silent long enough for a read timeout.
    Trickle(Duration),
}

/// A registry that serves one manifest (declaring a component of `declared` bytes) and lies.
struct FakeRegistry {
    addr: SocketAddr,
    manifest_digest: String,
    /// Body bytes the registry managed to send, over every answer.
    sent: Arc<AtomicU64>,
    /// Requests for a blob.
    blob_requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    async fn start(declared: u64, manifest: ManifestAnswer, blob: BlobAnswer) -> Self {
        let manifest_bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest_of(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/wasm", "digest": digest_of(b"the component nobody sends"), "size": declared}],
        }))
        .unwrap();
        let manifest_digest = digest_of(&manifest_bytes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let blob_requests = Arc::new(AtomicU64::new(0));
        let (sent_, requests_) = (sent.clone(), blob_requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (manifest_bytes, sent, requests) = (manifest_bytes.clone(), sent_.clone(), requests_.clone());
                tokio::spawn(async move {
                    let _ = answer(stream, &manifest_bytes, manifest, blob, &sent, &requests).await;
                });
            }
        });
        Self { addr, manifest_digest, sent, blob_requests, task }
    }

    fn reference(&self) -> String {
        format!("{}/skiff/hostile@{}", self.addr, self.manifest_digest)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    fn client(&self, limits: PullLimits, cache: &Path) -> Registry {
        let options = RegistryOptions { insecure: vec![self.addr.to_string()], auth_file: None, limits };
        Registry::new(options, Some(Cache::new(cache)))
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request on `stream`, answered as the registry's mood says; the connection closes after.
async fn answer(
    stream: tokio::net::TcpStream,
    manifest_bytes: &[u8],
    manifest: ManifestAnswer,
    blob: BlobAnswer,
    sent: &AtomicU64,
    blob_requests: &AtomicU64,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await? <= 2 {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let mut stream = stream.into_inner();
    let head = |content_type: &str, length: Option<usize>| {
        let length = length.map(|length| format!("Content-Length: {length}\r\n")).unwrap_or_default();
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n")
    };
    let chunk = vec![b'x'; 64 * 1024];
    let lie = |mut stream: tokio::net::TcpStream, total: u64| async move {
        while sent.load(Ordering::SeqCst) < total {
            stream.write_all(&chunk).await?;
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        Ok(())
    };
    if path.contains("/manifests/") {
        let content_type = "application/vnd.oci.image.manifest.v1+json";
        match manifest {
            ManifestAnswer::Honest => {
                stream.write_all(head(content_type, Some(manifest_bytes.len())).as_bytes()).await?;
                stream.write_all(manifest_bytes).await?;
                sent.fetch_add(manifest_bytes.len() as u64, Ordering::SeqCst);
                Ok(())
            }
            ManifestAnswer::Liar(total) => {
                stream.write_all(head(content_type, None).as_bytes()).await?;
                lie(stream, total).await
            }
        }
    } else if path.contains("/blobs/") {
        blob_requests.fetch_add(1, Ordering::SeqCst);
        stream.write_all(head("application/octet-stream", None).as_bytes()).await?;
        match blob {
            BlobAnswer::Liar(total) => lie(stream, total).await,
            BlobAnswer::StallAfterOneByte => {
                stream.write_all(b"x").await?;
                sent.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok(())
            }
            BlobAnswer::Trickle(every) => loop {
                stream.write_all(b"x").await?;
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(every).await;
            },
        }
    } else {
        // `/v2/`: no authentication asked for.
        stream.write_all(head("application/json", Some(2)).as_bytes()).await?;
        stream.write_all(b"{}").await
    }
}

/// Files left in the cache folder (a refused pull leaves none, not even a partial one).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join("sha256")) else { return Vec::new() };
    entries.map(|entry| entry.unwrap().path()).collect()
}

const DECLARED: u64 = 4_400_000;
/// What a liar sends in the tests that run in the test's own process.
const LIE: u64 = 200 * 1024 * 1024;

#[tokio::test]
async fn a_component_larger_than_its_manifest_declares_is_cut_off_as_it_arrives() {
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, BlobAnswer::Liar(LIE)).await;
    let scratch = ScratchDir::new();
    let pulled = registry.client(PullLimits::default(), &scratch.0).pull(&registry.reference()).await;
    let Err(error @ PullError::TooLarge { .. }) = pulled else { panic!("not refused as too large: {pulled:?}") };
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("4400000"), "{error}");
    // What was read is what was declared; the rest only fills the sockets' buffers.
    let sent = registry.sent();
    assert!(sent < DECLARED + 16 * 1024 * 1024, "the registry sent {sent} bytes for {DECLARED} declared");
    assert_eq!(files_in(&scratch.0), Vec::<PathBuf>::new(), "nothing refused is left on disk");
}

#[tokio::test]
async fn a_manifest_past_its_cap_is_refused_as_it_arrives() {
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Liar(LIE), BlobAnswer::Liar(LIE)).await;
    let scratch = ScratchDir::new();
    let pulled = registry.client(PullLimits::default(), &scratch.0).pull(&registry.reference()).await;
    assert!(matches!(pulled, Err(PullError::TooLarge { what: "the manifest", .. })), "{pulled:?}");
    let sent = registry.sent();
    assert!(sent < MAX_MANIFEST_BYTES + 16 * 1024 * 1024, "the registry sent {sent} bytes of manifest");
    assert_eq!(registry.blob_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_component_declared_larger_than_the_maximum_is_never_asked_for() {
    let limits = PullLimits { max_component_bytes: 1024 * 1024, ..PullLimits::default() };
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, BlobAnswer::Liar(LIE)).await;
    let scratch = ScratchDir::new();
    let pulled = registry.client(limits, &scratch.0).pull(&registry.reference()).await;
    let Err(error @ PullError::TooLarge { what: "the component", .. }) = pulled else { panic!("{pulled:?}") };
    assert!(error.to_string().contains("1048576"), "{error}");
    assert_eq!(registry.blob_requests.load(Ordering::SeqCst), 0, "a blob too large to take is not downloaded");
}

#[tokio::test]
async fn a_registry_that_stalls_is_given_up_on_after_the_read_timeout() {
    let limits = PullLimits { timeout: Duration::from_millis(500), ..PullLimits::default() };
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, BlobAnswer::StallAfterOneByte).await;
    let scratch = ScratchDir::new();
    let started = Instant::now();
    let pulled = registry.client(limits, &scratch.0).pull(&registry.reference()).await;
    let elapsed = started.elapsed();
    let Err(error @ PullError::Registry(..)) = pulled else { panic!("{pulled:?}") };
    assert!(error.is_transient(), "a stall is worth trying again: {error}");
    assert!(error.to_string().contains("no answer within 0.5 s"), "{error}");
    assert!(elapsed < Duration::from_secs(5), "given up after {elapsed:?}");
    assert_eq!(files_in(&scratch.0), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_registry_that_trickles_is_given_up_on_at_the_pull_deadline() {
    let limits = PullLimits { deadline: Duration::from_secs(1), ..PullLimits::default() };
    let trickle = BlobAnswer::Trickle(Duration::from_millis(100));
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, trickle).await;
    let scratch = ScratchDir::new();
    let started = Instant::now();
    let pulled = registry.client(limits, &scratch.0).pull(&registry.reference()).await;
    let elapsed = started.elapsed();
    let Err(error @ PullError::Registry(..)) = pulled else { panic!("{pulled:?}") };
    assert!(error.to_string().contains("pull deadline of 1 s"), "{error}");
    assert!(elapsed < Duration::from_secs(5), "given up after {elapsed:?}");
    assert!(registry.sent() > 1, "the registry kept sending");
    assert_eq!(files_in(&scratch.0), Vec::<PathBuf>::new(), "a cancelled pull leaves nothing on disk");
}

/// `skiff serve` of the testbed following `release` (a plain file), with its admin API.
fn pod(registry: &FakeRegistry, release: &Path, data: &Path, extra: &[&str]) -> (SkiffProcess, SocketAddr) {
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut args: Vec<String> = [
        "--component",
        &component("testbed").display().to_string(),
        "--data-dir",
        &data.display().to_string(),
        "--release-file",
        &release.display().to_string(),
        "--release-interval-ms",
        "100",
        "--insecure-registries",
        &registry.addr.to_string(),
        "--admin-token",
        "test-admin-token",
        "--admin-listen",
        &admin.to_string(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    (SkiffProcess::serve(&args), admin)
}

async fn release_status(admin: SocketAddr) -> Value {
    let url = format!("http://{admin}/admin/services/testbed/release");
    let answer = reqwest::Client::new().get(url).bearer_auth("test-admin-token").send().await;
    match answer {
        Ok(answer) => answer.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

/// Writes the release file aside and renames it over, as a plain rewrite does.
fn write_release(file: &Path, content: &str) {
    let aside = file.with_extension("tmp");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_release_file_cancels_a_pull_that_stalls() {
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, BlobAnswer::StallAfterOneByte).await;
    let scratch = ScratchDir::new();
    let release = scratch.0.join("release.yaml");
    write_release(&release, &format!("component: {}\n", registry.reference()));
    // Timeouts far longer than the test: only the newer file can end this pull.
    let patient = ["--registry-timeout-ms", "600000", "--release-pull-deadline-ms", "600000"];
    let (pod, admin) = pod(&registry, &release, &scratch.0.join("pod"), &patient);
    eventually(Duration::from_secs(30), || async {
        let status = release_status(admin).await;
        check(registry.blob_requests.load(Ordering::SeqCst) > 0 && status["release"]["phase"] == "applying", || {
            format!("not stalled on the pull yet: {status}")
        })
    })
    .await;

    // The operator gives up on that release: back to the image's component.
    let changed = Instant::now();
    write_release(&release, "label: back\n");
    let status = eventually(Duration::from_secs(10), || async {
        let status = release_status(admin).await;
        check(status["release"]["phase"] == "applied" && status["release"]["desired"] == "image", || {
            format!("still on the stalled pull: {status}")
        })?;
        Ok(status)
    })
    .await;
    eprintln!("applied the newer release {:?} after the change: {status}", changed.elapsed());
    pod.wait_ready().await;
}

/// The most memory `pid` has held (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_pulling_from_a_registry_that_lies_about_sizes_stays_small() {
    // As in the report: 4.4 MB declared, 1.2 GB sent.
    let registry = FakeRegistry::start(DECLARED, ManifestAnswer::Honest, BlobAnswer::Liar(1_200_000_000)).await;
    let scratch = ScratchDir::new();
    let release = scratch.0.join("release.yaml");
    write_release(&release, &format!("component: {}\n", registry.reference()));
    let (pod, admin) = pod(&registry, &release, &scratch.0.join("pod"), &[]);
    let status = eventually(Duration::from_secs(60), || async {
        let status = release_status(admin).await;
        check(status["release"]["phase"] == "refused", || format!("not refused yet: {status}"))?;
        Ok(status)
    })
    .await;
    let reason = status["release"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("while its manifest declares 4400000"), "{status}");
    let (peak, sent) = (peak_rss(pod.child.id()), registry.sent());
    eprintln!("peak RSS {} MiB; the registry sent {} MiB", peak >> 20, sent >> 20);
    assert!(peak < 400 << 20, "the pod reached {} MiB", peak >> 20);
}
