//! `docker_config`: Docker's `config.json` against serde_json's reading and Docker's
//! documented lookup rules.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde_json::Value;

use crate::{Credentials, DockerConfig};

static RUN: AtomicU64 = AtomicU64::new(0);

/// The `auths` keys Docker files a registry under, in the order they are tried.
fn keys(registry: &str) -> Vec<String> {
    if ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&registry) {
        return [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    ["", "https://", "http://"]
        .iter()
        .map(|scheme| format!("{scheme}{registry}"))
        .chain(
            ["/v1/", "/v2/"]
                .iter()
                .map(|v| format!("https://{registry}{v}")),
        )
        .collect()
}

/// What the reference expects for `registry`: `Ok(None)` for no credentials, `Err(())`
/// for an `auth` that is not base64 of `user:password`.
fn expected(
    root: &serde_json::Map<String, Value>,
    registry: &str,
) -> Result<Option<(String, String)>, ()> {
    let Some(Value::Object(auths)) = root.get("auths") else {
        return Ok(None);
    };
    for key in keys(registry) {
        let Some(Value::Object(entry)) = auths.get(&key) else {
            continue;
        };
        if let Some(Value::String(auth)) = entry.get("auth")
            && !auth.is_empty()
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| ())?;
            let text = String::from_utf8(raw).map_err(|_| ())?;
            let colon = text.find(':').ok_or(())?;
            if colon == 0 {
                return Err(());
            }
            return Ok(Some((
                text[..colon].to_owned(),
                text[colon + 1..].to_owned(),
            )));
        }
        if let (Some(Value::String(user)), Some(Value::String(password))) =
            (entry.get("username"), entry.get("password"))
            && !user.is_empty()
        {
            return Ok(Some((user.clone(), password.clone())));
        }
    }
    Ok(None)
}

/// Registries worth asking about: Docker Hub, and what each `auths` key names.
fn registries(root: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = vec!["docker.io".to_owned(), "r.example:5000".to_owned()];
    if let Some(Value::Object(auths)) = root.get("auths") {
        for key in auths.keys().take(8) {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches("/v1/")
                .trim_end_matches("/v2/");
            if !host.is_empty() && !host.contains('/') {
                out.push(host.to_owned());
            }
        }
    }
    out
}

fn pair(c: &Credentials) -> (String, String) {
    (c.username.clone(), c.password.clone())
}

/// Oracle for Docker's `config.json`: a file loads exactly when serde_json reads a JSON
/// object from it; credentials come from `auths` by Docker's key forms and order (`auth` as
/// base64 of `user:password` first, else `username` and `password`); credentials set and
/// saved read back, with every other field of the file kept; removed, they are gone. Files
/// that name credential helpers are only loaded (helpers are programs).
pub fn docker_config(data: &[u8]) {
    let dir =
        std::env::temp_dir().join(format!("ocikit-fuzz-docker-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!(
        "config-{}.json",
        RUN.fetch_add(1, Ordering::Relaxed) % 4
    ));
    std::fs::write(&path, data).unwrap();
    let loaded = DockerConfig::load(&path);
    let lenient = serde_json::from_slice::<Value>(data);
    let root = match (&loaded, lenient) {
        (Ok(_), Ok(Value::Object(root))) => root,
        (Err(_), Ok(Value::Object(_))) => panic!("a JSON object was refused"),
        (Ok(_), _) => panic!("something other than a JSON object was loaded"),
        (Err(_), _) => return,
    };
    let mut config = loaded.unwrap();
    if root.contains_key("credHelpers") || root.contains_key("credsStore") {
        return;
    }
    for registry in registries(&root) {
        let got = config.credentials(&registry).map(|c| c.as_ref().map(pair));
        assert_eq!(
            got.is_err(),
            expected(&root, &registry).is_err(),
            "{registry}"
        );
        if let Ok(got) = got {
            assert_eq!(got, expected(&root, &registry).unwrap(), "{registry}");
        }
    }

    // Set, save, load: the credentials read back, every other field kept.
    let registry = registries(&root).pop().unwrap();
    let credentials = Credentials::new("fuzz", "pa:ss\u{e9}");
    config.set(&registry, &credentials);
    config.save().unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut again = DockerConfig::load(&path).unwrap();
    assert_eq!(
        again.credentials(&registry).unwrap().as_ref().map(pair),
        Some(pair(&credentials))
    );
    for (key, value) in &root {
        if key != "auths" {
            assert_eq!(saved.get(key), Some(value), "field {key} changed");
        }
    }
    if let (Some(Value::Object(before)), Some(Value::Object(after))) =
        (root.get("auths"), saved.get("auths"))
    {
        let forms = keys(&registry);
        for (key, value) in before {
            if !forms.contains(key) {
                assert_eq!(after.get(key), Some(value), "auths entry {key} changed");
            }
        }
    }
    assert!(again.remove(&registry));
    again.save().unwrap();
    let gone = DockerConfig::load(&path).unwrap();
    assert_eq!(
        gone.credentials(&registry).unwrap().as_ref().map(pair),
        None
    );
}
