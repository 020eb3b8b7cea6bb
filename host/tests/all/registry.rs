//! Releases through a real OCI registry (Debian's `docker-registry` on loopback): `skiff push`,
//! pulls checked by digest and cached, and three `skiff serve` processes following one release
//! folder updated the way the kubelet updates a mounted ConfigMap.
//!
//! The tests are `#[ignore]`d; `scripts/test` runs them (`-- --ignored registry`) when
//! `docker-registry` is installed, as `.ci/run` makes sure it is.

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff::release::{Cache, PullError, Registry, RegistryOptions};
use skiff::service::digest_of;

use crate::fixtures::SkiffProcess;
use crate::helpers::{ScratchDir, component};
use crate::swap::variant;
use crate::wait::{check, eventually};

const TOKEN: &str = "test-admin-token";

/// `docker-registry serve` on a free loopback port, storing into a scratch folder.
pub struct TestRegistry {
    child: Child,
    pub addr: SocketAddr,
    pub storage: PathBuf,
    _dir: ScratchDir,
}

impl TestRegistry {
    pub async fn start() -> Self {
        let binary = ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("this test needs docker-registry: apt-get install docker-registry"));
        let dir = ScratchDir::new();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let storage = dir.0.join("storage");
        let config = dir.0.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child =
            Command::new(binary).arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let registry = Self { child, addr, storage, _dir: dir };
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(15), || async {
            match client.get(format!("http://{addr}/v2/")).send().await {
                Ok(response) if response.status() == StatusCode::OK => Ok(()),
                other => Err(format!("the registry does not answer: {other:?}")),
            }
        })
        .await;
        registry
    }

    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.addr)
    }

    /// The file holding a blob in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skiff push --insecure`: the digest reference it prints.
fn push(registry: &TestRegistry, wasm: &Path, tag: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["push", "--insecure", "--component"])
        .arg(wasm)
        .arg(registry.reference("skiff/testbed", tag))
        .output()
        .unwrap();
    assert!(output.status.success(), "skiff push failed: {}", String::from_utf8_lossy(&output.stderr));
    let reference = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(reference.starts_with(&format!("{}/skiff/testbed@sha256:", registry.addr)), "{reference}");
    reference
}

fn client(registry: &TestRegistry, cache: Option<&Path>) -> Registry {
    let options = RegistryOptions { insecure: vec![registry.addr.to_string()], ..RegistryOptions::default() };
    Registry::new(options, cache.map(Cache::new))
}

#[tokio::test]
#[ignore = "needs docker-registry"]
async fn pushed_components_are_pulled_by_digest_checked_and_cached() {
    let registry = TestRegistry::start().await;
    let scratch = ScratchDir::new();
    let wasm = scratch.0.join("testbed.wasm");
    let bytes = variant(&std::fs::read(component("testbed")).unwrap(), "pushed");
    std::fs::write(&wasm, &bytes).unwrap();
    let reference = push(&registry, &wasm, "v1");

    let cache = scratch.0.join("cache");
    let pulled = client(&registry, Some(&cache)).pull(&reference).await.unwrap();
    // The digest hosts report is the component's own, not the manifest's.
    assert_eq!(pulled.digest, digest_of(&bytes));
    assert_ne!(reference.rsplit_once('@').unwrap().1, pulled.digest);
    assert_eq!(pulled.bytes, bytes);
    assert!(!pulled.cached);
    // A tag is no release: every pod must run the same bytes.
    let by_tag = client(&registry, None).pull(&registry.reference("skiff/testbed", "v1")).await;
    assert!(matches!(by_tag, Err(PullError::NoDigest(_))), "{by_tag:?}");
    // With the registry gone, the cache serves.
    drop(registry);
    let again = client_without_registry(&cache).pull(&reference).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.bytes, bytes);
}

fn client_without_registry(cache: &Path) -> Registry {
    Registry::new(RegistryOptions::default(), Some(Cache::new(cache)))
}

#[tokio::test]
#[ignore = "needs docker-registry"]
async fn a_blob_whose_digest_does_not_match_is_refused() {
    let registry = TestRegistry::start().await;
    let scratch = ScratchDir::new();
    let wasm = scratch.0.join("testbed.wasm");
    let testbed = std::fs::read(component("testbed")).unwrap();
    let bytes = variant(&testbed, "tampered");
    std::fs::write(&wasm, &bytes).unwrap();
    let reference = push(&registry, &wasm, "v1");
    // Someone with write access to the registry's storage swaps the component's bytes for as
    // many others (a longer blob is refused before its digest is checked: its size is wrong).
    let other = variant(&testbed, "tamperer");
    assert_eq!(other.len(), bytes.len());
    std::fs::write(registry.blob_file(&digest_of(&bytes)), &other).unwrap();
    let cache = scratch.0.join("cache");
    let pulled = client(&registry, Some(&cache)).pull(&reference).await;
    assert!(matches!(pulled, Err(PullError::DigestMismatch { .. })), "{pulled:?}");
    assert!(
        !cache.join("sha256").join(digest_of(&bytes).trim_start_matches("sha256:")).exists(),
        "a refused blob is never cached"
    );
}

/// A release folder as the kubelet keeps a mounted ConfigMap: `release.yaml` → `..data/release.yaml`,
/// `..data` → a timestamped folder, swapped atomically on every update.
struct ReleaseDir {
    dir: PathBuf,
    generation: usize,
}

impl ReleaseDir {
    fn new(parent: &Path, content: &str) -> Self {
        let dir = parent.join("release");
        std::fs::create_dir_all(&dir).unwrap();
        let mut release = Self { dir, generation: 0 };
        release.kubelet_update(content);
        std::os::unix::fs::symlink("..data/release.yaml", release.file()).unwrap();
        release
    }

    fn file(&self) -> PathBuf {
        self.dir.join("release.yaml")
    }

    /// The kubelet's atomic writer: a new folder, a new `..data_tmp` link renamed over `..data`,
    /// the old folder removed.
    fn kubelet_update(&mut self, content: &str) {
        self.generation += 1;
        let folder = format!("..2026_12_01_00_00_00.{}", self.generation);
        std::fs::create_dir(self.dir.join(&folder)).unwrap();
        std::fs::write(self.dir.join(&folder).join("release.yaml"), content).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&folder, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if self.generation > 1 {
            std::fs::remove_dir_all(self.dir.join(format!("..2026_12_01_00_00_00.{}", self.generation - 1))).unwrap();
        }
    }

    /// A plain rewrite of the file (outside a cluster): written aside, renamed over it.
    fn rewrite(&self, content: &str) {
        let tmp = self.dir.join("release.yaml.tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.file()).unwrap();
    }
}

/// One `skiff serve` of the testbed following the release file, with its own data folder.
struct Pod {
    process: SkiffProcess,
    admin: SocketAddr,
}

impl Pod {
    fn start(registry: &TestRegistry, release: &Path, data: &Path) -> Self {
        Self::start_with(registry, release, data, &[])
    }

    fn start_with(registry: &TestRegistry, release: &Path, data: &Path, extra: &[&str]) -> Self {
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let args = [
            "--component".to_owned(),
            component("testbed").display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--release-file".into(),
            release.display().to_string(),
            "--release-interval-ms".into(),
            "200".into(),
            "--insecure-registries".into(),
            registry.addr.to_string(),
            "--admin-token".into(),
            TOKEN.into(),
            "--admin-listen".into(),
            admin.to_string(),
        ];
        let args: Vec<String> = args.into_iter().chain(extra.iter().map(|arg| (*arg).to_owned())).collect();
        Self { process: SkiffProcess::serve(&args), admin }
    }

    async fn digest(&self) -> String {
        let response = reqwest::get(format!("http://{}/hello", self.process.addr)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()["skiff-component-digest"].to_str().unwrap().to_owned()
    }

    async fn release(&self) -> Value {
        let client = reqwest::Client::new();
        let url = format!("http://{}/admin/services/testbed/release", self.admin);
        client.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.process.ops)).await.unwrap().text().await.unwrap()
    }
}

/// Clients sending `GET /hello` to every pod until stopped: each response's digest and time.
struct FleetLoad {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, usize, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl FleetLoad {
    fn start(pods: &[&Pod], clients_per_pod: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (index, pod) in pods.iter().enumerate() {
            for _ in 0..clients_per_pod {
                let (client, url) = (reqwest::Client::new(), format!("http://{}/hello", pod.process.addr));
                let (stop, seen, failures) = (stop.clone(), seen.clone(), failures.clone());
                tasks.push(tokio::spawn(async move {
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed) {
                        sent += 1;
                        match client.get(&url).send().await {
                            Ok(response) if response.status() == StatusCode::OK => {
                                let digest = response.headers()["skiff-component-digest"].to_str().unwrap().to_owned();
                                seen.lock().unwrap().push((Instant::now(), index, digest));
                            }
                            Ok(response) => failures.lock().unwrap().push(format!("status {}", response.status())),
                            Err(error) => failures.lock().unwrap().push(format!("{error}")),
                        }
                    }
                    sent
                }));
            }
        }
        Self { stop, seen, failures, tasks }
    }

    /// When every pod's responses were all by `digest` from some moment on (after `since`).
    fn converged_at(&self, pods: usize, digest: &str, since: Instant) -> Option<Instant> {
        let seen = self.seen.lock().unwrap();
        (0..pods)
            .map(|pod| {
                let mine: Vec<_> = seen.iter().filter(|(at, index, _)| *index == pod && *at >= since).collect();
                let last_other = mine.iter().rposition(|(_, _, d)| d != digest);
                let first_new = match last_other {
                    Some(position) => mine.get(position + 1),
                    None => mine.first(),
                };
                first_new.map(|(at, _, _)| *at)
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|times| times.into_iter().max())
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for task in self.tasks {
            sent += task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (sent, failures)
    }
}

async fn ready_within(pod: &Pod, started: Instant) -> Duration {
    pod.process.wait_ready().await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker-registry"]
async fn a_fleet_follows_its_release_file_under_load() {
    let registry = TestRegistry::start().await;
    let scratch = ScratchDir::new();
    let testbed = std::fs::read(component("testbed")).unwrap();
    let (v1, v2) = (variant(&testbed, "release-1"), variant(&testbed, "release-2"));
    let (v1_file, v2_file) = (scratch.0.join("v1.wasm"), scratch.0.join("v2.wasm"));
    std::fs::write(&v1_file, &v1).unwrap();
    std::fs::write(&v2_file, &v2).unwrap();
    let (v1_ref, v2_ref) = (push(&registry, &v1_file, "v1"), push(&registry, &v2_file, "v2"));
    let mut release = ReleaseDir::new(&scratch.0, &format!("component: {v1_ref}\nlabel: v1\n"));

    // Three pods come up on the release, not on their image's component.
    let data = |n: usize| scratch.0.join(format!("pod-{n}"));
    let started = Instant::now();
    let mut pods: Vec<Pod> = (0..3).map(|n| Pod::start(&registry, &release.file(), &data(n))).collect();
    for pod in &pods {
        let took = ready_within(pod, started).await;
        eprintln!("start to ready with a pull (cache miss), three pods at once: {took:?}");
        assert_eq!(pod.digest().await, digest_of(&v1));
    }

    // `kubectl apply` of the next release: the kubelet swaps `..data` in every pod.
    let load = FleetLoad::start(&pods.iter().collect::<Vec<_>>(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed = Instant::now();
    release.kubelet_update(&format!("component: {v2_ref}\nlabel: v2\n"));
    let v2_digest = digest_of(&v2);
    let converged = eventually(Duration::from_secs(30), || async {
        load.converged_at(pods.len(), &v2_digest, changed).ok_or_else(|| "not every pod serves v2 yet".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (requests, failures) = load.finish().await;
    eprintln!(
        "release file change to every pod serving the new digest: {:?}; failed requests: {} of {requests}",
        converged - changed,
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {requests} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    for pod in &pods {
        let status = pod.release().await;
        assert_eq!(status["release"]["phase"], "applied", "{status}");
        assert_eq!(status["release"]["desired_digest"], v2_digest.as_str(), "{status}");
        assert_eq!(status["converged"], true, "{status}");
    }

    // A restarted pod comes up on the desired version, from its cache.
    pods[0].process.kill();
    let restarted = Instant::now();
    pods[0] = Pod::start(&registry, &release.file(), &data(0));
    let took = ready_within(&pods[0], restarted).await;
    eprintln!("start to ready, restart with a cache hit: {took:?}");
    assert_eq!(pods[0].digest().await, v2_digest);
    // A new replica (empty cache) pulls it.
    let fresh = Instant::now();
    let replica = Pod::start(&registry, &release.file(), &data(3));
    let took = ready_within(&replica, fresh).await;
    eprintln!("start to ready, new replica with a pull (cache miss): {took:?}");
    assert_eq!(replica.digest().await, v2_digest);

    // A version that fails the smoke test (users' health route is not the testbed's), written
    // as a plain rewrite: refused by every pod, reported, and v2 keeps serving.
    let users_file = scratch.0.join("users.wasm");
    std::fs::copy(component("users"), &users_file).unwrap();
    let bad_ref = push(&registry, &users_file, "bad");
    release.rewrite(&format!("component: {bad_ref}\nlabel: bad\n"));
    for pod in pods.iter().chain([&replica]) {
        let status = eventually(Duration::from_secs(30), || async {
            let status = pod.release().await;
            check(status["release"]["phase"] == "refused", || format!("not refused yet: {status}"))?;
            Ok(status)
        })
        .await;
        let reason = status["release"]["reason"].as_str().unwrap();
        assert!(reason.contains("smoke test failed"), "{status}");
        assert_eq!(status["converged"], false, "{status}");
        assert_eq!(pod.digest().await, v2_digest);
        let metrics = pod.metrics().await;
        assert!(
            metrics.contains(r#"skiff_release_refusals_total{route="testbed",result="smoke-test-failed"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"skiff_release_converged{route="testbed"} 0"#), "{metrics}");
        // Ready all the same: the pod serves the version it ran (the detail is on the ops port).
        let ready = reqwest::get(format!("http://{}/readyz", pod.process.ops)).await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        let said = ready.text().await.unwrap();
        assert!(said.contains("testbed: release") && said.contains("refused"), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker-registry"]
async fn a_release_missing_at_start_keeps_a_pod_unready_unless_it_may_fall_back() {
    let registry = TestRegistry::start().await;
    let scratch = ScratchDir::new();
    let missing = format!("{}/skiff/testbed@sha256:{}", registry.addr, "0".repeat(64));
    let mut release = ReleaseDir::new(&scratch.0, &format!("component: {missing}\n"));
    let strict = Pod::start(&registry, &release.file(), &scratch.0.join("strict"));
    let lenient = Pod::start_with(&registry, &release.file(), &scratch.0.join("lenient"), &["--release-fallback"]);

    // The lenient pod serves its image's component and says so; the strict one stays unready.
    lenient.process.wait_ready().await;
    assert_eq!(lenient.digest().await, digest_of(&std::fs::read(component("testbed")).unwrap()));
    let said = reqwest::get(format!("http://{}/readyz", lenient.process.ops)).await.unwrap().text().await.unwrap();
    assert!(said.contains("serving the image's component"), "{said}");
    assert!(lenient.metrics().await.contains(r#"skiff_release_fallback{route="testbed"} 1"#));
    // The strict pod retries the pull (on a loaded machine its first attempt may still be
    // under way when the lenient pod is ready).
    eventually(Duration::from_secs(30), || async {
        let status = strict.release().await;
        check(status["release"]["phase"] == "retrying", || format!("not retrying yet: {status}"))
    })
    .await;
    let ready = reqwest::get(format!("http://{}/readyz", strict.process.addr)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Once the file names a version the registry has, both run it.
    let wasm = scratch.0.join("v1.wasm");
    let v1 = variant(&std::fs::read(component("testbed")).unwrap(), "late");
    std::fs::write(&wasm, &v1).unwrap();
    let reference = push(&registry, &wasm, "v1");
    release.kubelet_update(&format!("component: {reference}\n"));
    strict.process.wait_ready().await;
    for pod in [&strict, &lenient] {
        eventually(Duration::from_secs(30), || async {
            check(pod.digest().await == digest_of(&v1), || "not on the release yet".into())
        })
        .await;
    }
    assert!(lenient.metrics().await.contains(r#"skiff_release_fallback{route="testbed"} 0"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker-registry"]
async fn a_canary_in_the_release_file_splits_is_promoted_and_a_failing_one_is_refused() {
    let registry = TestRegistry::start().await;
    let scratch = ScratchDir::new();
    let testbed = std::fs::read(component("testbed")).unwrap();
    let (v1, v2) = (variant(&testbed, "canary-1"), variant(&testbed, "canary-2"));
    let pushed = |bytes: &[u8], name: &str| {
        let file = scratch.0.join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        push(&registry, &file, name)
    };
    let (v1_ref, v2_ref) = (pushed(&v1, "v1"), pushed(&v2, "v2"));
    let faulty_ref = pushed(&std::fs::read(component("faulty")).unwrap(), "faulty");
    let mut release = ReleaseDir::new(&scratch.0, &format!("component: {v1_ref}\n"));
    let pod = Pod::start(&registry, &release.file(), &scratch.0.join("pod"));
    pod.process.wait_ready().await;
    let digests = |count: usize| {
        let pod = &pod;
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..count {
                seen.insert(pod.digest().await);
            }
            seen
        }
    };

    // A canary at 50 %: the pod splits its requests between the two.
    release.kubelet_update(&format!("component: {v1_ref}\ncanary:\n  component: {v2_ref}\n  percent: 50\n"));
    eventually(Duration::from_secs(30), || async {
        let status = pod.release().await;
        check(status["converged"] == true && status["canary"]["percent"] == 50, || format!("{status}"))
    })
    .await;
    assert_eq!(digests(10).await, BTreeSet::from([digest_of(&v1), digest_of(&v2)]));

    // Promoted: the canary's reference becomes the component.
    release.kubelet_update(&format!("component: {v2_ref}\n"));
    eventually(Duration::from_secs(30), || async {
        let status = pod.release().await;
        check(status["converged"] == true && status["canary"].is_null(), || format!("{status}"))
    })
    .await;
    assert_eq!(digests(10).await, BTreeSet::from([digest_of(&v2)]));

    // A canary that fails its requests is rolled back by the pod and reported refused.
    release.kubelet_update(&format!("component: {v2_ref}\ncanary:\n  component: {faulty_ref}\n  percent: 50\n"));
    eventually(Duration::from_secs(30), || async {
        check(pod.release().await["canary"]["percent"] == 50, || "the canary has not started".into())
    })
    .await;
    // Enough requests for the canary's minimum sample (20 of its own) at 50 %.
    let client = reqwest::Client::new();
    for _ in 0..50 {
        let _ = client.get(format!("http://{}/hello", pod.process.addr)).send().await;
    }
    let status = eventually(Duration::from_secs(30), || async {
        let status = pod.release().await;
        check(status["release"]["phase"] == "refused", || format!("not refused: {status}"))?;
        Ok(status)
    })
    .await;
    let reason = status["release"]["reason"].as_str().unwrap();
    assert!(reason.contains("rolled back after errors: 20 of its last 20 requests failed (100%)"), "{status}");
    assert!(reason.contains("to try it again, change the release file"), "{status}");
    assert_eq!(digests(5).await, BTreeSet::from([digest_of(&v2)]));
    assert!(pod.metrics().await.contains(r#"skiff_release_refusals_total{route="testbed",result="canary-errors"} 1"#));
}
