//! A new user's review of issue 14's fixes, with the real peers: error messages that name
//! the flags the command in hand really has, and say what happened rather than something
//! that sounds like another operation.

use crate::registry::Serve;
use crate::{fails, ok};

/// Every `--…tls-verify` flag an error names.
fn tls_flags_named(err: &str) -> Vec<&str> {
    err.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|word| word.starts_with("--") && word.contains("tls-verify"))
        .map(|word| word.split('=').next().unwrap_or(word))
        .collect()
}

/// A plain-HTTP registry used without the flag that allows it: the hint names that flag as
/// the command spells it (`pull` and `push` have only the `--src-`/`--dest-` forms, and only
/// the side that is a registry matters), never a flag the command would refuse.
#[test]
fn the_plain_http_hint_names_the_flag_the_command_has() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let server = Serve::start(&d.join("registry"), &[]);
    let src = format!("oci:{}:hello", layout.display());
    let remote = format!("docker://{}/app:v1", server.addr);
    let pulled = format!("oci:{}:v1", d.join("pulled").display());

    let err = fails(&["push", &src, &remote]);
    assert_eq!(tls_flags_named(&err), ["--dest-tls-verify"], "{err}");
    let err = fails(&["copy", &src, &remote]);
    assert_eq!(tls_flags_named(&err), ["--dest-tls-verify"], "{err}");
    ok(&["push", "--dest-tls-verify=false", &src, &remote]);

    let err = fails(&["pull", &remote, &pulled]);
    assert_eq!(tls_flags_named(&err), ["--src-tls-verify"], "{err}");
    let err = fails(&["copy", &remote, &pulled]);
    assert_eq!(tls_flags_named(&err), ["--src-tls-verify"], "{err}");
    let err = fails(&["inspect", &remote]);
    assert_eq!(tls_flags_named(&err), ["--tls-verify"], "{err}");
    // Each flag the hints named is one the command takes.
    ok(&["pull", "--src-tls-verify=false", &remote, &pulled]);
    ok(&["inspect", "--tls-verify=false", &remote]);
    // A copy within that registry needs both flags, and says so (not "one or the other").
    let other = format!("docker://{}/other:v1", server.addr);
    let err = fails(&["copy", "--src-tls-verify=false", &remote, &other]);
    assert!(
        err.contains("--src-tls-verify=false and --dest-tls-verify=false"),
        "{err}"
    );
    ok(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &remote,
        &other,
    ]);

    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// Reading a corrupt blob is not writing one: `unpack` of a layer whose stored bytes changed
/// says what the content hashes to, not "written content" (as `cat` says for the same blob).
#[test]
fn a_corrupt_blob_read_by_unpack_is_not_called_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let target = d.join("rootfs");
    let err = fails(&[
        "unpack",
        &format!("oci:{}:hello", layout.display()),
        target.to_str().unwrap(),
    ]);
    assert!(err.contains(layer), "names the blob: {err}");
    assert!(err.contains("hashes to"), "{err}");
    assert!(!err.contains("written"), "nothing was written: {err}");
    assert!(!target.exists());
}

/// The tags (`org.opencontainers.image.ref.name`) of layout `layout`'s index, sorted.
fn layout_tags(layout: &std::path::Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags
}

/// An image with several `RepoTags` (skopeo's `--additional-tag`, or `docker save` of an
/// image with several names): an import keeps every name, as `docker load` does, and an
/// import that names one of them tags the image with that name, not with the first.
#[test]
fn every_repo_tag_of_a_docker_archive_image_is_imported_and_the_one_named_is_used() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let archive = d.join("two-names.tar");
    skopeo.ok(&[
        "copy",
        "--additional-tag",
        "demo/x:two",
        &format!("oci:{}:hello", layout.display()),
        &format!("docker-archive:{}:demo/x:one", archive.display()),
    ]);

    let all = d.join("all");
    ok(&[
        "import",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}", all.display()),
    ]);
    assert_eq!(
        layout_tags(&all),
        ["docker.io/demo/x:one", "docker.io/demo/x:two"]
    );

    let second = d.join("second");
    ok(&[
        "import",
        &format!("docker-archive:{}:demo/x:two", archive.display()),
        &format!("oci:{}", second.display()),
    ]);
    assert_eq!(layout_tags(&second), ["docker.io/demo/x:two"]);
    let err = fails(&[
        "import",
        &format!("docker-archive:{}:demo/x:three", archive.display()),
        &format!("oci:{}", d.join("none").display()),
    ]);
    assert!(err.contains("demo/x:three"), "{err}");
    assert!(!d.join("none").exists());
}

/// One image under two tags copied into a new layout: nothing was "already present" there;
/// the second tag's blobs are the ones this copy just wrote. A copy into a layout that holds
/// part of the image still counts what it found.
#[test]
fn a_copy_into_a_new_layout_finds_nothing_already_present() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let src = format!("oci:{}", layout.display());
    ok(&["tag", &format!("{src}:hello"), "again"]);
    let copied = crate::json(&["copy", &src, &format!("oci:{}", d.join("new").display())]);
    assert_eq!(copied["blobsSkipped"], 0, "{copied}");
    assert_eq!(copied["blobsCopied"], copied["blobs"], "{copied}");

    // The same copy again: every blob is there already, once each.
    let again = crate::json(&["copy", &src, &format!("oci:{}", d.join("new").display())]);
    assert_eq!(again["blobsCopied"], 0, "{again}");
    assert_eq!(again["blobsSkipped"], again["blobs"], "{again}");
}

/// A tag the registry does not have: the error says which manifest is missing in words, not
/// the HTTP request ("has no GET manifest latest"), and names `latest` when no tag was given,
/// as skopeo does.
#[test]
fn a_missing_tag_is_named_without_the_http_method() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Serve::start(&d.join("registry"), &[]);
    let target = format!("oci:{}", d.join("pulled").display());
    for (image, tag) in [("app", "latest"), ("app:v9", "v9")] {
        let err = fails(&[
            "pull",
            "--src-tls-verify=false",
            &format!("docker://{}/{image}", server.addr),
            &target,
        ]);
        assert!(
            err.contains(&format!("has no manifest {tag} in repository app")),
            "{err}"
        );
        assert!(!err.contains("GET"), "{err}");
    }
    assert!(!d.join("pulled").exists());
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// Libraries that repeat their cause's message in their own (the S3 store does, four deep)
/// print it once: a cause whose text the line above already holds adds nothing.
#[test]
fn a_cause_the_line_above_already_says_is_not_repeated() {
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return;
    };
    let missing = format!("{}-missing", moto.bucket());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args([
            "registry-gc",
            "--s3-bucket",
            &missing,
            "--s3-endpoint",
            &moto.endpoint(),
        ])
        .envs(ocikit_testkit::moto::ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("store does not answer"), "{stderr}");
    assert_eq!(
        stderr.matches("NoSuchBucket").count(),
        1,
        "the store's message, once: {stderr}"
    );
}

/// A self-signed certificate that is also a CA (basicConstraints CA:TRUE, what
/// `openssl req -x509` makes by default) used as the registry's own certificate: accepted
/// when the user trusts exactly that certificate (`--ca-file`, `--cert-dir`), as skopeo
/// accepts it, with its host name still checked; refused otherwise, with a hint that says
/// how to trust it.
#[test]
fn a_trusted_ca_certificate_serving_as_the_server_certificate_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(d.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(d.join("key.pem"), key.serialize_pem()).unwrap();
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--tls-cert",
            d.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            d.join("key.pem").to_str().unwrap(),
        ],
    );
    let repo = format!("docker://{}/app", server.addr);
    // Trusted byte for byte with --ca-file (or as a .crt of --cert-dir), it is accepted, as
    // skopeo accepts it.
    let err = fails(&[
        "tags",
        "--ca-file",
        d.join("cert.pem").to_str().unwrap(),
        &repo,
    ]);
    assert!(
        err.contains("has no tags in repository app"),
        "reached it: {err}"
    );
    std::fs::create_dir(d.join("certs")).unwrap();
    std::fs::copy(d.join("cert.pem"), d.join("certs/ca.crt")).unwrap();
    let err = fails(&[
        "tags",
        "--cert-dir",
        d.join("certs").to_str().unwrap(),
        &repo,
    ]);
    assert!(
        err.contains("has no tags in repository app"),
        "reached it: {err}"
    );
    // Not trusted, it is refused, and the hint says how to trust it.
    let err = fails(&["tags", &repo]);
    assert!(err.contains("CA:TRUE"), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    assert!(err.contains("--tls-verify=false"), "{err}");
    // Trusted, but under another name: the host name is still checked.
    let other = rcgen::CertificateParams::new(vec!["registry.invalid".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.join("other.pem"), other.pem()).unwrap();
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--tls-cert",
            d.join("other.pem").to_str().unwrap(),
            "--tls-key",
            d.join("key.pem").to_str().unwrap(),
        ],
    );
    let repo = format!("docker://{}/app", server.addr);
    let err = fails(&[
        "tags",
        "--ca-file",
        d.join("other.pem").to_str().unwrap(),
        &repo,
    ]);
    assert!(!err.contains("has no tags"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A certificate that is not a CA, trusted with --ca-file, is accepted.
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&leaf_key)
        .unwrap();
    std::fs::write(d.join("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(d.join("leaf-key.pem"), leaf_key.serialize_pem()).unwrap();
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--tls-cert",
            d.join("leaf.pem").to_str().unwrap(),
            "--tls-key",
            d.join("leaf-key.pem").to_str().unwrap(),
        ],
    );
    let repo = format!("docker://{}/app", server.addr);
    let err = fails(&[
        "tags",
        "--ca-file",
        d.join("leaf.pem").to_str().unwrap(),
        &repo,
    ]);
    assert!(
        err.contains("has no tags in repository app"),
        "reached it: {err}"
    );
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// A registry that wants credentials: the error says which flag gives them to this command
/// (`--dest-creds` for a push, `--src-creds` for a pull, `--creds` for `tags`) or that
/// `ocikit login` stores them, as the TLS hints do for their flags.
#[test]
fn a_registry_that_wants_credentials_is_told_how_to_give_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("users"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let server = Serve::start(
        &d.join("registry"),
        &["--htpasswd", d.join("users").to_str().unwrap()],
    );
    let src = format!("oci:{}:hello", layout.display());
    let remote = format!("docker://{}/app:v1", server.addr);
    let err = fails(&["push", "--dest-tls-verify=false", &src, &remote]);
    assert!(err.contains("--dest-creds USER:PASSWORD"), "{err}");
    assert!(err.contains("ocikit login"), "{err}");
    let err = fails(&[
        "push",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:wrong",
        &src,
        &remote,
    ]);
    assert!(err.contains("--dest-creds"), "{err}");
    ok(&[
        "push",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pw",
        &src,
        &remote,
    ]);
    let pulled = format!("oci:{}:v1", d.join("pulled").display());
    let err = fails(&["pull", "--src-tls-verify=false", &remote, &pulled]);
    assert!(err.contains("--src-creds USER:PASSWORD"), "{err}");
    assert!(!err.contains("--dest-creds"), "{err}");
    let repo = format!("docker://{}/app", server.addr);
    let err = fails(&["tags", "--tls-verify=false", &repo]);
    assert!(err.contains("--creds USER:PASSWORD"), "{err}");
    assert!(!err.contains("-src-creds"), "{err}");
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// A layout whose image is untagged (`skopeo copy … oci:DIR` without a tag) copied whole:
/// the image is copied and stays untagged, as for untagged archives, instead of "copied 0
/// image(s)" and an empty layout. A layout with no image at all is refused, as an archive
/// with none is, and nothing is created.
#[test]
fn a_whole_layout_copy_takes_its_untagged_images_too() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let untagged = d.join("untagged");
    skopeo.ok(&[
        "copy",
        &format!("oci:{}:hello", layout.display()),
        &format!("oci:{}", untagged.display()),
    ]);
    assert!(layout_tags(&untagged).is_empty());

    let copy = d.join("copy");
    let copied = crate::json(&[
        "copy",
        &format!("oci:{}", untagged.display()),
        &format!("oci:{}", copy.display()),
    ]);
    assert_eq!(copied["blobs"], 3, "{copied}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{index}");
    assert!(layout_tags(&copy).is_empty(), "stays untagged: {index}");
    ok(&["fsck", &format!("oci:{}", copy.display())]);

    let empty = d.join("empty");
    ok(&["init", &format!("oci:{}", empty.display())]);
    let err = fails(&[
        "copy",
        &format!("oci:{}", empty.display()),
        &format!("oci:{}", d.join("nothing").display()),
    ]);
    assert!(err.contains("holds no image"), "{err}");
    assert!(!d.join("nothing").exists());
}

/// `login` with a wrong password says the registry refused that user's credentials, not
/// "refused access to repository  (401) for GET /v2/" (no repository is involved).
#[test]
fn a_refused_login_says_the_credentials_were_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("users"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let server = Serve::start(
        &d.join("registry"),
        &["--htpasswd", d.join("users").to_str().unwrap()],
    );
    let authfile = d.join("config.json");
    let err = fails(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "-u",
        "alice",
        "-p",
        "wrong",
        &server.addr.to_string(),
    ]);
    assert!(err.contains("refused the credentials of alice"), "{err}");
    assert!(!err.contains("repository  "), "{err}");
    assert!(!authfile.exists());
    ok(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "-u",
        "alice",
        "-p",
        "alice-pw",
        &server.addr.to_string(),
    ]);
    assert!(authfile.exists());
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// The index entries of an oci-archive: (digest, tag if any), in order.
fn archive_entries(archive: &std::path::Path) -> Vec<(String, Option<String>)> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut index = None;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("index.json") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            index = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        }
    }
    let index = index.expect("the archive has an index.json");
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_owned(),
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect()
}

/// A whole layout holding an untagged image (as `skopeo copy … oci:DIR` leaves it) and a
/// tagged one, exported (or copied) into an oci-archive: the untagged image goes in
/// untagged, as skopeo writes such entries, the tagged one with its tag; skopeo reads the
/// archive. A docker-archive needs names, and still says so.
#[test]
fn a_whole_layout_with_untagged_images_exports_to_an_oci_archive() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let untagged_digest = crate::image::build(&layout, "hello", &[]);
    let mixed = d.join("mixed");
    skopeo.ok(&[
        "copy",
        &format!("oci:{}:hello", layout.display()),
        &format!("oci:{}", mixed.display()),
    ]);
    let tagged_digest = crate::image::build(&mixed, "other", &["--label", "which=other"]);
    assert_ne!(tagged_digest, untagged_digest);
    assert_eq!(layout_tags(&mixed), ["other"]);
    let source = format!("oci:{}", mixed.display());

    for (n, command) in ["export", "copy"].into_iter().enumerate() {
        let archive = d.join(format!("out-{n}.tar"));
        ok(&[
            command,
            &source,
            &format!("oci-archive:{}", archive.display()),
        ]);
        let mut entries = archive_entries(&archive);
        entries.sort();
        let mut expected = vec![
            (untagged_digest.clone(), None),
            (tagged_digest.clone(), Some("other".to_owned())),
        ];
        expected.sort();
        assert_eq!(entries, expected, "{command}");
        // skopeo reads the archive: the tagged image by its tag.
        let back = d.join(format!("back-{n}"));
        skopeo.ok(&[
            "copy",
            &format!("oci-archive:{}:other", archive.display()),
            &format!("oci:{}:back", back.display()),
        ]);
    }
    let err = fails(&[
        "export",
        &source,
        &format!("docker-archive:{}", d.join("out.docker.tar").display()),
    ]);
    assert!(err.contains("name the image for the archive"), "{err}");
    assert!(!d.join("out.docker.tar").exists());
}

/// One image under three tags copied whole is one image, not three: the summary counts
/// images by digest and says the tags apart; an unpack of a one-layer image says "1 layer",
/// not "1 layers". The `--json` keys stay as they were.
#[test]
fn summaries_count_images_and_say_singulars() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    for tag in ["v2", "v3"] {
        ok(&["tag", "-q", &format!("oci:{}:hello", layout.display()), tag]);
    }
    let text = ok(&[
        "copy",
        &format!("oci:{}", layout.display()),
        &format!("oci:{}", d.join("copy").display()),
    ]);
    assert!(text.contains("copied 1 image (3 tags) from"), "{text}");
    let copied = crate::json(&[
        "copy",
        &format!("oci:{}:hello", layout.display()),
        &format!("oci:{}", d.join("copy2").display()),
    ]);
    assert!(copied["blobsCopied"].is_number(), "{copied}");
    let text = ok(&[
        "copy",
        &format!("oci:{}:hello", layout.display()),
        &format!("oci:{}", d.join("copy3").display()),
    ]);
    assert!(text.contains("copied 1 image from"), "{text}");

    let one = d.join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::write(one.join("only"), b"one file").unwrap();
    let single = d.join("single");
    ok(&[
        "build",
        "--tag",
        &format!("oci:{}:one", single.display()),
        one.to_str().unwrap(),
    ]);
    let unpacked = crate::json(&[
        "unpack",
        &format!("oci:{}:one", single.display()),
        d.join("rootfs-json").to_str().unwrap(),
    ]);
    assert_eq!(unpacked["layers"], 1, "{unpacked}");
    let files = unpacked["files"].as_u64().unwrap();
    let text = ok(&[
        "unpack",
        &format!("oci:{}:one", single.display()),
        d.join("rootfs").to_str().unwrap(),
    ]);
    let files_text = if files == 1 {
        "1 file,".to_owned()
    } else {
        format!("{files} files,")
    };
    assert!(text.contains(&format!("1 layer, {files_text}")), "{text}");
}

/// A tag the layout lacks is named with the layout, as `untag` says it.
#[test]
fn a_missing_tag_names_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let err = fails(&[
        "unpack",
        &format!("oci:{}:nope", layout.display()),
        d.join("rootfs").to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("no tag \"nope\" in {}", layout.display())),
        "{err}"
    );
    assert!(!d.join("rootfs").exists());
    // Every command that reads an image from a layout says it the same way.
    let image = format!("oci:{}:nope", layout.display());
    let named = format!("no tag \"nope\" in {}", layout.display());
    for args in [
        vec!["inspect", image.as_str()],
        vec!["tag", image.as_str(), "other"],
        vec!["referrers", image.as_str()],
    ] {
        let err = fails(&args);
        assert!(err.contains(&named), "{args:?}: {err}");
        assert_eq!(err.matches("nope").count(), 1, "said once: {err}");
    }
}
