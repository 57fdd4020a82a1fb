//! `S3Store::new` changes no process-global state: its HTTP clients bring their own rustls
//! crypto provider (ring) instead of installing a process default. Checked in a child process
//! that runs only this test, so no other test's provider can hide or cause a failure.

use std::process::Command;

use ocikit_store::s3::S3Config;
use ocikit_store::{S3Store, StoreExt};
use ocikit_testkit::moto;
use rustls::crypto::CryptoProvider;

/// Set in the child process.
const CHILD: &str = "OCIKIT_TEST_S3_PROVIDER_CHILD";
const NAME: &str = "s3_provider::s3_store_new_installs_no_process_crypto_provider";

#[test]
fn s3_store_new_installs_no_process_crypto_provider() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child ran this test, not nothing (a filter that matches no test passes too).
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
}

fn child() {
    assert!(
        CryptoProvider::get_default().is_none(),
        "premise: the child starts without a process-default provider"
    );
    // No request is made yet: building the store (and its HTTP clients) must not install one.
    let store = S3Store::new(
        S3Config::new("unused")
            .with_endpoint("https://127.0.0.1:9")
            .with_credentials("id", "secret")
            .with_region("us-east-1"),
    )
    .unwrap();
    drop(store);
    assert!(
        CryptoProvider::get_default().is_none(),
        "S3Store::new installed a process-default crypto provider"
    );

    // And the store works without one, against a real S3 server.
    let Some(server) = moto::shared() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = S3Store::new(
            S3Config::new(server.bucket())
                .with_endpoint(server.endpoint())
                .with_credentials(moto::ACCESS_KEY, moto::SECRET_KEY)
                .with_allow_http(true)
                .with_prefix("provider"),
        )
        .unwrap();
        let digest = store.put_bytes(b"no global state").await.unwrap();
        assert_eq!(store.require(&digest).await.unwrap(), 15);
        let bytes = store.get_bytes(&digest, 1024).await.unwrap().unwrap();
        assert_eq!(bytes, &b"no global state"[..]);
    });
    assert!(CryptoProvider::get_default().is_none());
}
