//! `serve --config FILE`: the file's keys are serve's flags; the metrics behind their token on
//! the main address; the access log's line on stderr.

use crate::registry::Serve;

#[test]
fn serve_runs_from_a_config_file_with_metrics_and_an_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("metrics.token"), "s3cret\n").unwrap();
    let root = d.join("registry");
    std::fs::write(
        d.join("serve.toml"),
        format!(
            "root = {:?}\nmetrics-token-file = {:?}\nlog-format = \"json\"\nshutdown-timeout = \"5s\"\n",
            root.to_str().unwrap(),
            d.join("metrics.token").to_str().unwrap(),
        ),
    )
    .unwrap();
    // `--addr 127.0.0.1:0` from the command line; everything else from the file.
    let server = Serve::start_args(&["--config", d.join("serve.toml").to_str().unwrap()]);
    assert!(root.exists(), "the root named in the file was not used");
    assert_eq!(server.request("GET", "/v2/", &[], b"").status, 200);
    assert_eq!(server.request("GET", "/metrics", &[], b"").status, 401);
    let wrong = [("authorization", "Bearer guess".to_owned())];
    assert_eq!(server.request("GET", "/metrics", &wrong, b"").status, 401);
    let right = [("authorization", "Bearer s3cret".to_owned())];
    let metrics = server.request("GET", "/metrics", &right, b"");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("ocikit_registry_http_requests_total{route=\"base\",status=\"200\"} 1\n"),
        "{text}"
    );
    let (exit, logs) = server.stop();
    assert!(exit.success(), "{logs}");
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "ocikit_registry::access")
        .collect();
    let base = access
        .iter()
        .find(|v| v["fields"]["path"] == "/v2/")
        .unwrap_or_else(|| panic!("no access line for /v2/ in {logs}"));
    assert_eq!(base["fields"]["client"], "127.0.0.1", "{base}");
    assert_eq!(base["fields"]["user"], "-", "{base}");
    assert_eq!(base["fields"]["status"], 200, "{base}");
    assert!(base["fields"]["ms"].is_u64(), "{base}");
    assert!(base["fields"]["bytes_out"].as_u64().unwrap() > 0, "{base}");
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        format!(
            "root = {:?}\nlisten = \"0.0.0.0:5000\"\n",
            root.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = crate::ocikit(&["serve", "--config", file.to_str().unwrap()]);
    // A usage error, as clap's own.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown key `listen`"), "{err}");
    assert!(!root.exists(), "a refused serve created its root");
}
