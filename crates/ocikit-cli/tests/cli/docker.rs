//! `docker://` locations end to end against Debian's `docker-registry` (distribution 2.8.2),
//! started here on 127.0.0.1 with filesystem storage in a temp dir: ocikit pushes and skopeo
//! pulls it back, skopeo pushes and ocikit pulls; digests agree byte for byte.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use ocikit::digest::Digest;
use ocikit_testkit::distribution::Distribution;

use crate::{fails, json, oci, ok};

/// `bytes` skopeo writes to stdout for `args` (it must succeed).
fn skopeo(args: &[&str]) -> Vec<u8> {
    crate::skopeo().ok(args).into_bytes()
}

/// The digest `oci:` layout `layout` gives `tag`.
fn tagged(layout: &Path, tag: &str) -> String {
    let listing = json(&["ls", &oci(layout, "")]);
    listing["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag}: {listing}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn ocikit_pushes_to_distribution_and_skopeo_pulls_it_back() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(registry) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let target = registry.image("team/hello:v1");

    // Plain HTTP is refused unless asked for.
    let err = fails(&["push", &oci(&layout, ":hello"), &target]);
    assert!(err.contains(registry.addr()), "{err}");
    ok(&[
        "push",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &target,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &target]);
    assert_eq!(Digest::sha256(&raw).to_string(), digest);
    // ocikit's own inspect and tags agree.
    let ours = crate::ocikit(&["inspect", "--raw", "--tls-verify=false", &target]);
    assert!(ours.status.success());
    assert_eq!(ours.stdout, raw);
    let summary = json(&["inspect", "--tls-verify=false", &target]);
    assert_eq!(summary["digest"], digest.as_str());
    assert!(
        summary["created"].is_string(),
        "the config was read: {summary}"
    );
    let tags = json(&["tags", "--tls-verify=false", &registry.image("team/hello")]);
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let copied = dir.path().join("skopeo");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &target,
        &format!("oci:{}:back", copied.display()),
    ]);
    assert_eq!(tagged(&copied, "back"), digest);

    // And ocikit pulls it back too, through `copy` and `pull`; pushing again skips it all.
    let pulled = dir.path().join("pulled");
    ok(&[
        "pull",
        "--src-tls-verify=false",
        &target,
        &oci(&pulled, ":back"),
    ]);
    assert_eq!(tagged(&pulled, "back"), digest);
    ok(&["fsck", &oci(&pulled, "")]);
    let again = json(&[
        "copy",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &target,
    ]);
    assert_eq!(again["blobsCopied"], 0, "{again}");
    // By digest, registry to archive (through a scratch layout).
    let archive = dir.path().join("hello.tar");
    ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("{}@{digest}", registry.image("team/hello")),
        &format!("oci-archive:{}:hello", archive.display()),
    ]);
    assert!(archive.is_file());
}

#[test]
fn skopeo_pushes_to_distribution_and_ocikit_pulls_it() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(registry) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    crate::image::build(&layout, "hello", &["--env", "FROM=skopeo"]);
    let target = registry.image("skopeo/hello:v2");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &target,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &target]);
    let digest = Digest::sha256(&raw).to_string();

    let pulled = dir.path().join("pulled");
    let report = json(&[
        "copy",
        "--src-tls-verify=false",
        &target,
        &oci(&pulled, ":v2"),
    ]);
    assert!(report["blobsCopied"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(tagged(&pulled, "v2"), digest);
    ok(&["fsck", &oci(&pulled, "")]);
    // Docker schema 2 (skopeo converts): the same bytes come back under Docker types.
    let docker = registry.image("skopeo/hello-v2s2:v2");
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &docker,
    ]);
    let raw_v2s2 = skopeo(&["inspect", "--raw", "--tls-verify=false", &docker]);
    assert!(String::from_utf8_lossy(&raw_v2s2).contains("vnd.docker.distribution.manifest.v2"));
    let v2s2 = dir.path().join("v2s2");
    ok(&[
        "pull",
        "--src-tls-verify=false",
        &docker,
        &oci(&v2s2, ":v2"),
    ]);
    assert_eq!(tagged(&v2s2, "v2"), Digest::sha256(&raw_v2s2).to_string());
    ok(&["fsck", &oci(&v2s2, "")]);
    // Registry to registry: a second repository on the same server.
    let mirror = registry.image("mirror/hello:v2");
    ok(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &target,
        &mirror,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &mirror]);
    assert_eq!(Digest::sha256(&raw).to_string(), digest);
    // A tag the registry lacks names the registry and the repository.
    let err = fails(&[
        "pull",
        "--src-tls-verify=false",
        &registry.image("skopeo/hello:nope"),
        &oci(&pulled, ":x"),
    ]);
    assert!(
        err.contains("skopeo/hello") && err.contains(registry.addr()),
        "{err}"
    );
}

/// Runs `ocikit` with `DOCKER_CONFIG` pointing at `config_dir`, feeding `stdin`.
fn with_config(config_dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    with_helpers(config_dir, None, args, stdin)
}

/// [`with_config`] with `bin` (credential helpers) first on `PATH`.
fn with_helpers(
    config_dir: &Path,
    bin: Option<&Path>,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocikit"));
    if let Some(bin) = bin {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command.env("PATH", path);
    }
    let mut child = command
        .args(args)
        .env("DOCKER_CONFIG", config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_stores_credentials_that_push_and_pull_use_and_logout_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("writers"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let server = crate::registry::Serve::start(
        &d.join("registry"),
        &["--htpasswd", d.join("writers").to_str().unwrap()],
    );
    let config_dir = d.join("docker");
    let config = config_dir.join("config.json");
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let target = format!("docker://{}/team/hello:v1", server.addr);
    let push = [
        "push",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &target,
    ];

    // A wrong password is refused and nothing is written.
    let out = with_config(
        &config_dir,
        &[
            "login",
            "-u",
            "alice",
            "--password-stdin",
            "--tls-verify=false",
            &server.addr,
        ],
        "wrong\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&server.addr));
    assert!(!config.exists());
    let out = with_config(&config_dir, &push, "");
    assert_eq!(out.status.code(), Some(1), "anonymous push must fail");

    let out = with_config(
        &config_dir,
        &[
            "login",
            "-u",
            "alice",
            "--password-stdin",
            "--tls-verify=false",
            &server.addr,
        ],
        "alice-pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(
        stored["auths"][&server.addr]["auth"].is_string(),
        "{stored}"
    );

    let out = with_config(&config_dir, &push, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = d.join("pulled");
    let out = with_config(
        &config_dir,
        &[
            "pull",
            "--src-tls-verify=false",
            &target,
            &oci(&pulled, ":v1"),
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tagged(&pulled, "v1"), digest);

    let out = with_config(&config_dir, &["logout", &server.addr], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged out"));
    let out = with_config(&config_dir, &push, "");
    assert_eq!(out.status.code(), Some(1), "logged out: push must fail");

    // A credential helper named for the registry in credHelpers answers instead.
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-ocikit-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh
[ \"$1\" = get ] || exit 1
read server
             [ \"$server\" = \"{}\" ] || {{ echo 'credentials not found'; exit 1; }}
             echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"alice\",\"Secret\":\"alice-pw\"}}'
",
            server.addr
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{}":"ocikit-test"}}}}"#, server.addr),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(push)
        .env("DOCKER_CONFIG", &config_dir)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn login_keeps_the_secret_in_the_credential_helper_config_json_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("writers"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let server = crate::registry::Serve::start(
        &d.join("registry"),
        &["--htpasswd", d.join("writers").to_str().unwrap()],
    );
    // A helper speaking Docker's protocol, keeping one secret in a file.
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let state = d.join("helper-state.json");
    let script = |name: &str, body: String| {
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let state_text = state.display().to_string();
    script(
        "ocikit-store",
        format!(
            "state='{state_text}'
case \"$1\" in
  store) cat > \"$state\" ;;
  get) read server
       if [ -f \"$state\" ] && grep -q \"\\\"ServerURL\\\":\\\"$server\\\"\" \"$state\"; then cat \"$state\";
       else echo 'credentials not found in native keychain'; exit 1; fi ;;
  erase) read server; [ -f \"$state\" ] && rm \"$state\" || {{ echo 'credentials not found'; exit 1; }} ;;
  *) exit 1 ;;
esac
"
        ),
    );
    script(
        "ocikit-broken",
        "cat > /dev/null; echo 'the keychain is locked'; exit 1\n".into(),
    );
    let config_dir = d.join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    let config = config_dir.join("config.json");
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let target = format!("docker://{}/team/hello:v1", server.addr);
    let push = [
        "push",
        "--dest-tls-verify=false",
        &oci(&layout, ":hello"),
        &target,
    ];
    let login = [
        "login",
        "-u",
        "alice",
        "--password-stdin",
        "--tls-verify=false",
        &server.addr,
    ];
    let bin = Some(bin.as_path());

    // A helper that is not installed, or refuses: login fails and changes nothing.
    for (helper, said) in [
        ("ocikit-missing", "docker-credential-ocikit-missing"),
        ("ocikit-broken", "the keychain is locked"),
    ] {
        let before = format!(r#"{{"credsStore":"{helper}"}}"#);
        std::fs::write(&config, &before).unwrap();
        let out = with_helpers(&config_dir, bin, &login, "alice-pw\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(said), "{err}");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    }

    // A stale clear-text entry goes; the secret goes to the helper; the file keeps `{}`.
    let stale = "b2xkOnNlY3JldA=="; // old:secret
    std::fs::write(
        &config,
        format!(
            r#"{{"credsStore":"ocikit-store","auths":{{"{}":{{"auth":"{stale}"}}}},"psFormat":"x"}}"#,
            server.addr
        ),
    )
    .unwrap();
    let out = with_helpers(&config_dir, bin, &login, "alice-pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker-credential-ocikit-store"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        stored["auths"][&server.addr],
        serde_json::json!({}),
        "{stored}"
    );
    assert_eq!(stored["psFormat"], "x");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains(stale) && !text.contains("alice-pw"),
        "{text}"
    );
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        kept,
        serde_json::json!({"ServerURL": server.addr, "Username": "alice", "Secret": "alice-pw"})
    );

    // Push finds the credentials through the helper.
    let out = with_helpers(&config_dir, bin, &push, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Logout erases them in the helper and the file; push is anonymous again.
    let out = with_helpers(&config_dir, bin, &["logout", &server.addr], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged out"));
    assert!(!state.exists(), "the helper still holds the secret");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(stored["auths"].get(&server.addr).is_none(), "{stored}");
    let out = with_helpers(&config_dir, bin, &push, "");
    assert_eq!(out.status.code(), Some(1), "logged out: push must fail");
}

/// Adds a hand-written index over two tagged images of `layout` and tags it `tag`; returns
/// its digest.
fn write_index(layout: &Path, images: &[(&str, &str)], tag: &str) -> String {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap().clone();
    let mut manifests = Vec::new();
    for (image_tag, arch) in images {
        let entry = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == *image_tag)
            .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
            "platform": {"os": "linux", "architecture": arch}
        }));
    }
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = Digest::sha256(&bytes);
    std::fs::write(layout.join(digest.blob_path()), &bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(), "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    digest.to_string()
}

#[test]
fn a_multi_arch_index_goes_through_distribution_whole_or_one_platform() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(registry) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let amd = crate::image::build(&layout, "amd", &["--platform", "linux/amd64"]);
    let arm = crate::image::build(
        &layout,
        "arm",
        &["--platform", "linux/arm64", "--env", "ARCH=arm64"],
    );
    let index = write_index(&layout, &[("amd", "amd64"), ("arm", "arm64")], "multi");
    let target = registry.image("multi/app:v1");
    ok(&[
        "push",
        "--dest-tls-verify=false",
        &oci(&layout, ":multi"),
        &target,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &target]);
    assert_eq!(Digest::sha256(&raw).to_string(), index);
    let skopeo_copy = dir.path().join("skopeo");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &target,
        &format!("oci:{}:all", skopeo_copy.display()),
    ]);
    assert_eq!(tagged(&skopeo_copy, "all"), index);

    let pulled = dir.path().join("pulled");
    ok(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &target,
        &oci(&pulled, ":all"),
    ]);
    assert_eq!(tagged(&pulled, "all"), index);
    ok(&[
        "pull",
        "--platform",
        "linux/arm64",
        "--src-tls-verify=false",
        &target,
        &oci(&pulled, ":arm"),
    ]);
    assert_eq!(tagged(&pulled, "arm"), arm);
    ok(&[
        "pull",
        "--platform",
        "linux/amd64",
        "--src-tls-verify=false",
        &target,
        &oci(&pulled, ":amd"),
    ]);
    assert_eq!(tagged(&pulled, "amd"), amd);
    ok(&["fsck", &oci(&pulled, "")]);
    // From an archive to the registry, through a scratch layout.
    let archive = dir.path().join("multi.tar");
    ok(&[
        "copy",
        &oci(&layout, ":multi"),
        &format!("oci-archive:{}:multi", archive.display()),
    ]);
    let from_archive = registry.image("multi/from-archive:v1");
    ok(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}:multi", archive.display()),
        &from_archive,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &from_archive]);
    assert_eq!(Digest::sha256(&raw).to_string(), index);
}

#[test]
fn referrers_of_a_registry_image_come_from_the_api_or_the_tag_schema() {
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("src");
    let subject = crate::image::build(&layout, "v1", &[]);
    let file = dir.path().join("sig.bin");
    std::fs::write(&file, b"a signature").unwrap();
    let attached = json(&[
        "attach",
        &oci(&layout, ":v1"),
        "--artifact-type",
        "application/vnd.example.sig",
        file.to_str().unwrap(),
    ]);
    let artifact = attached["artifact"].as_str().unwrap().to_owned();
    ok(&["tag", &oci(&layout, &format!("@{artifact}")), "sig"]);
    // Ours has the referrers API; distribution 2.8 has not, so the client keeps the
    // referrers tag schema's index there.
    let ours = crate::registry::Serve::start(&dir.path().join("registry"), &["--log", "warn"]);
    for addr in [ours.addr.clone(), distribution.addr().to_owned()] {
        for tag in ["v1", "sig"] {
            ok(&[
                "copy",
                "--dest-tls-verify=false",
                &oci(&layout, &format!(":{tag}")),
                &format!("docker://{addr}/app:{tag}"),
            ]);
        }
        for image in [
            format!("docker://{addr}/app:v1"),
            format!("docker://{addr}/app@{subject}"),
        ] {
            let listed = json(&["referrers", "--tls-verify=false", &image]);
            assert_eq!(listed["subject"], subject.as_str(), "{addr}");
            let referrers = listed["referrers"].as_array().unwrap();
            assert_eq!(referrers.len(), 1, "{addr}: {listed}");
            assert_eq!(referrers[0]["digest"], artifact.as_str());
            assert_eq!(referrers[0]["artifactType"], "application/vnd.example.sig");
        }
        let filtered = json(&[
            "referrers",
            "--tls-verify=false",
            "--artifact-type",
            "application/vnd.example.sbom",
            &format!("docker://{addr}/app:v1"),
        ]);
        assert_eq!(filtered["referrers"].as_array().unwrap().len(), 0, "{addr}");
        let err = fails(&[
            "referrers",
            "--tls-verify=false",
            &format!("docker://{addr}/app:missing"),
        ]);
        assert!(err.contains("app"), "{err}");
    }
}
