//! Precompiled components: `skiff compile` writes machine code that `skiff serve` maps at start;
//! code that does not load falls back to the `.wasm` beside it; the admin API never accepts it.

use reqwest::StatusCode;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fixtures::SkiffProcess;
use crate::helpers::{AppOptions, Backend, ScratchDir, TestApp, TestDb, component};
use crate::wait::eventually;

fn compile(wasm: &Path, output: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["compile", "--component"])
        .arg(wasm)
        .arg("--output")
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success(), "skiff compile failed: {status}");
}

fn serve(component: &Path, data: &Path) -> SkiffProcess {
    SkiffProcess::serve(&[
        "--component".to_owned(),
        component.display().to_string(),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ])
}

/// Serves `component` as a pod would and checks that the testbed answers.
async fn assert_serves_hello(component: &Path, data: &Path) {
    let process = serve(component, data);
    process.wait_ready().await;
    let response = reqwest::get(format!("http://{}/hello", process.addr)).await.unwrap();
    assert_eq!((response.status(), response.text().await.unwrap()), (StatusCode::OK, "hello".to_owned()));
}

#[tokio::test]
async fn a_precompiled_component_serves() {
    let dir = ScratchDir::new();
    let compiled = dir.0.join("testbed.cwasm");
    compile(&component("testbed"), &compiled);
    assert_serves_hello(&compiled, &dir.0).await;
}

#[tokio::test]
async fn a_precompiled_component_reports_the_digest_of_its_wasm() {
    // Two pods on the same version, one on the .wasm and one on the .cwasm compiled from it,
    // report the same digest: the component's own, which a registry names too.
    let dir = ScratchDir::new();
    let wasm = dir.0.join("testbed.wasm");
    std::fs::copy(component("testbed"), &wasm).unwrap();
    let compiled = dir.0.join("testbed.cwasm");
    compile(&wasm, &compiled);
    let process = serve(&compiled, &dir.0);
    process.wait_ready().await;
    let response = reqwest::get(format!("http://{}/hello", process.addr)).await.unwrap();
    let digest = response.headers()["skiff-component-digest"].to_str().unwrap();
    assert_eq!(digest, skiff::service::digest_of(&std::fs::read(&wasm).unwrap()));
}

#[tokio::test]
async fn unusable_machine_code_falls_back_to_the_wasm_beside_it() {
    let dir = ScratchDir::new();
    std::fs::copy(component("testbed"), dir.0.join("testbed.wasm")).unwrap();
    let compiled = dir.0.join("testbed.cwasm");
    std::fs::write(&compiled, b"machine code for some other CPU").unwrap();
    assert_serves_hello(&compiled, &dir.0).await;
}

#[tokio::test]
async fn without_a_wasm_beside_it_unusable_machine_code_stops_the_host() {
    let dir = ScratchDir::new();
    let compiled = dir.0.join("testbed.cwasm");
    std::fs::write(&compiled, b"machine code for some other CPU").unwrap();
    let mut process = serve(&compiled, &dir.0);
    let status = eventually(Duration::from_secs(15), || {
        let exited = process.child.try_wait().unwrap();
        async move { exited.ok_or_else(|| "the host kept running on an unusable component".to_owned()) }
    })
    .await;
    assert!(!status.success());
}

#[tokio::test]
async fn the_admin_api_refuses_machine_code() {
    let dir = ScratchDir::new();
    let compiled = dir.0.join("testbed.cwasm");
    compile(&component("testbed"), &compiled);
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let token = "test-admin-token";
    let app =
        TestApp::spawn_with("testbed", &db, AppOptions { admin_token: Some(token.into()), ..AppOptions::default() })
            .await;
    let response = app
        .client
        .post(format!("http://{}/admin/services/testbed/versions?label=compiled", app.admin_addr.unwrap()))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(&compiled).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_client_error(), "{status}: {body}");
    assert!(body.contains("precompiled"), "{body}");
    // Still the version it started with, still serving.
    let hello = app.client.get(app.url("/hello")).send().await.unwrap();
    assert_eq!(hello.status(), StatusCode::OK);
}
