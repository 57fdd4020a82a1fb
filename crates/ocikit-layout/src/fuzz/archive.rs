//! `archive_import`: oci-archive and docker-archive import judged by the `tar` crate's
//! reading of the same bytes.
//!
//! The input is a tar stream (when its first block has the `ustar` magic: the seeds and
//! their mutations), or a small program rendered here into one with the `tar` crate's
//! header type (so that checksums hold): layers, configs, manifests, nested indexes, `index.json`,
//! `manifest.json` and `oci-layout` made from the input bytes and named by their digests
//! (or docker's file names), beside hostile entries (climbing, absolute and duplicate
//! names, links, directories, wrong digests, corrupt bytes).
//!
//! Every stream is imported both ways, each into a fresh layout in memory. Oracles: an
//! import that fails leaves nothing tagged and every blob it committed verified (fsck finds
//! nothing missing or corrupt), and fails with a kind hostile input may cause; an import
//! that succeeds read an archive the `tar` crate also reads, and agrees with it: an
//! oci-archive's index entries are the ones its `index.json` lists, a docker archive's images
//! are the ones its `manifest.json` lists (tags, config digest, diffIDs), every blob the
//! layout stores under a name the archive has is that member's bytes, and fsck finds
//! nothing missing, corrupt, unverifiable or invalid; and exporting what was imported and importing
//! that again gives the same entries or images.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type};
use ocikit_store::MemoryStore;
use serde_json::{Value, json};

use crate::archive::{docker, oci};
use crate::fsck::{FsckOptions, ProblemKind};
use crate::{Error, Layout, REF_NAME};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte() % 32);
        let end = (self.pos + len).min(self.data.len());
        let out = self.data.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos += len;
        out
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

const TAGS: &[&str] = &[
    "latest",
    "v1",
    "a/b:c",
    "docker.io/library/x:1",
    "",
    "../x",
    "a//b",
    "UP",
    "latest",
];

const NAMES: &[&str] = &[
    "blobs",
    "blobs/sha256",
    "blobs/sha256/",
    "./index.json",
    "../x",
    "/abs",
    "extra",
    "manifest.json",
    "repositories",
    "blobs/sha512/00",
    "blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000",
    "a/layer.tar",
    "x.json",
    "oci-layout",
    "index.json",
];

/// One archive member of a program.
struct Member {
    name: String,
    typeflag: u8,
    data: Vec<u8>,
    link: String,
}

fn sha(data: &[u8]) -> Digest {
    Digest::sha256(data)
}

/// A layer: a tar with one file.
fn layer(content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "f", content).unwrap();
    builder.into_inner().unwrap()
}

#[derive(Default)]
struct Program {
    members: Vec<Member>,
    /// Layers, configs and manifests made so far, by digest and size.
    layers: Vec<(Digest, u64)>,
    configs: Vec<(Digest, u64)>,
    manifests: Vec<(Digest, u64)>,
    indexes: Vec<(Digest, u64)>,
    /// The member names of layers and configs, as `manifest.json` would list them.
    docker_layers: Vec<String>,
    docker_configs: Vec<String>,
}

impl Program {
    fn blob(&mut self, data: Vec<u8>, docker_name: Option<String>) -> (Digest, u64) {
        let digest = sha(&data);
        let size = data.len() as u64;
        let name = docker_name.unwrap_or_else(|| format!("blobs/sha256/{}", digest.encoded()));
        self.members.push(Member {
            name,
            typeflag: b'0',
            data,
            link: String::new(),
        });
        (digest, size)
    }

    fn pick<T: Clone>(items: &[T], b: u8) -> Option<T> {
        (!items.is_empty()).then(|| items[usize::from(b) % items.len()].clone())
    }

    fn run(input: &mut Input<'_>) -> Vec<u8> {
        let mut p = Program::default();
        while !input.done() && p.members.len() < 24 {
            let op = input.byte() % 13;
            match op {
                0 => {
                    let data = if input.byte().is_multiple_of(4) {
                        input.bytes()
                    } else {
                        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
                    };
                    p.members.push(Member {
                        name: "oci-layout".into(),
                        typeflag: b'0',
                        data,
                        link: String::new(),
                    });
                }
                1 => {
                    let content = input.bytes();
                    let data = layer(&content);
                    let docker = input.byte().is_multiple_of(2);
                    let digest = sha(&data);
                    let name = docker.then(|| format!("{}/layer.tar", &digest.encoded()[..8]));
                    if let Some(name) = &name {
                        p.docker_layers.push(name.clone());
                    } else {
                        p.docker_layers
                            .push(format!("blobs/sha256/{}", digest.encoded()));
                    }
                    let described = p.blob(data, name);
                    p.layers.push(described);
                }
                2 => {
                    let n = usize::from(input.byte() % 4).min(p.layers.len());
                    let diff_ids: Vec<String> = p.layers[p.layers.len() - n..]
                        .iter()
                        .map(|(d, _)| d.to_string())
                        .collect();
                    let config = json!({
                        "architecture": "amd64",
                        "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": diff_ids},
                    });
                    let data = serde_json::to_vec(&config).unwrap();
                    let docker = input.byte().is_multiple_of(2);
                    let digest = sha(&data);
                    let name = docker.then(|| format!("{}.json", digest.encoded()));
                    p.docker_configs.push(
                        name.clone()
                            .unwrap_or_else(|| format!("blobs/sha256/{}", digest.encoded())),
                    );
                    let described = p.blob(data, name);
                    p.configs.push(described);
                }
                3 => {
                    let Some((config, config_size)) = Self::pick(&p.configs, input.byte()) else {
                        continue;
                    };
                    let n = usize::from(input.byte() % 4).min(p.layers.len());
                    let layers: Vec<Value> = p.layers[p.layers.len() - n..]
                        .iter()
                        .map(|(d, s)| json!({"mediaType": media_type::IMAGE_LAYER, "digest": d.to_string(), "size": s}))
                        .collect();
                    let manifest = json!({
                        "schemaVersion": 2,
                        "mediaType": media_type::IMAGE_MANIFEST,
                        "config": {"mediaType": media_type::IMAGE_CONFIG, "digest": config.to_string(), "size": config_size},
                        "layers": layers,
                    });
                    let described = p.blob(serde_json::to_vec(&manifest).unwrap(), None);
                    p.manifests.push(described);
                }
                4 => {
                    let n = input.byte() % 4;
                    let mut entries = Vec::new();
                    for _ in 0..n {
                        let b = input.byte();
                        let (target, kind) = match b % 3 {
                            0 => (Self::pick(&p.manifests, b >> 2), media_type::IMAGE_MANIFEST),
                            1 => (Self::pick(&p.configs, b >> 2), media_type::IMAGE_MANIFEST),
                            _ => (Self::pick(&p.indexes, b >> 2), media_type::IMAGE_INDEX),
                        };
                        let Some((digest, size)) = target else {
                            continue;
                        };
                        let mut entry = json!({
                            "mediaType": kind,
                            "digest": digest.to_string(),
                            "size": size,
                        });
                        if let Some(tag) = Self::pick(TAGS, input.byte())
                            && !input.byte().is_multiple_of(3)
                        {
                            entry["annotations"] = json!({ REF_NAME: tag });
                        }
                        entries.push(entry);
                    }
                    let index = json!({
                        "schemaVersion": 2,
                        "mediaType": media_type::IMAGE_INDEX,
                        "manifests": entries,
                    });
                    p.members.push(Member {
                        name: "index.json".into(),
                        typeflag: b'0',
                        data: serde_json::to_vec(&index).unwrap(),
                        link: String::new(),
                    });
                }
                5 => {
                    let n = input.byte() % 3;
                    let mut images = Vec::new();
                    for _ in 0..n {
                        let Some(config) = Self::pick(&p.docker_configs, input.byte()) else {
                            continue;
                        };
                        let k = usize::from(input.byte() % 4).min(p.docker_layers.len());
                        let layers = p.docker_layers[p.docker_layers.len() - k..].to_vec();
                        let tags: Vec<&str> = (0..input.byte() % 3)
                            .filter_map(|_| Self::pick(TAGS, input.byte()))
                            .collect();
                        images.push(json!({"Config": config, "RepoTags": tags, "Layers": layers}));
                    }
                    p.members.push(Member {
                        name: "manifest.json".into(),
                        typeflag: b'0',
                        data: serde_json::to_vec(&images).unwrap(),
                        link: String::new(),
                    });
                }
                6 => {
                    // A hostile member.
                    let name = Self::pick(NAMES, input.byte()).unwrap().to_owned();
                    let typeflag =
                        [b'0', b'5', b'2', b'1', b'6', b'x', b'L'][usize::from(input.byte() % 7)];
                    let link = Self::pick(NAMES, input.byte()).unwrap().to_owned();
                    let data = if typeflag == b'0' {
                        input.bytes()
                    } else {
                        Vec::new()
                    };
                    p.members.push(Member {
                        name,
                        typeflag,
                        data,
                        link,
                    });
                }
                7 => {
                    // A member again under the same name, other bytes.
                    if let Some(last) = p.members.last() {
                        let name = last.name.clone();
                        let data = input.bytes();
                        p.members.push(Member {
                            name,
                            typeflag: b'0',
                            data,
                            link: String::new(),
                        });
                    }
                }
                8 => {
                    // Corrupt one byte of a member.
                    let b = input.byte();
                    let n = p.members.len();
                    if let Some(m) = p.members.get_mut(usize::from(b) % n.max(1))
                        && !m.data.is_empty()
                    {
                        let at = usize::from(input.byte()) % m.data.len();
                        m.data[at] ^= 1 + input.byte() % 255;
                    }
                }
                9 => {
                    // A symlink to a member (docker archives link repeated layers).
                    let b = input.byte();
                    if let Some(target) = Self::pick(&p.docker_layers, b) {
                        let name = format!("l{b}/layer.tar");
                        p.docker_layers.push(name.clone());
                        p.members.push(Member {
                            name,
                            typeflag: b'2',
                            data: Vec::new(),
                            link: format!("../{target}"),
                        });
                    }
                }
                10 => {
                    // A raw, arbitrary blob named by its digest.
                    let data = input.bytes();
                    p.blob(data, None);
                }
                11 => {
                    // A nested index blob over earlier manifests (or configs, claimed to be
                    // manifests), named by its digest.
                    let n = input.byte() % 4;
                    let mut entries = Vec::new();
                    for _ in 0..n {
                        let b = input.byte();
                        let target = if b & 1 == 0 {
                            Self::pick(&p.manifests, b >> 1)
                        } else {
                            Self::pick(&p.configs, b >> 1)
                        };
                        if let Some((digest, size)) = target {
                            entries.push(json!({
                                "mediaType": media_type::IMAGE_MANIFEST,
                                "digest": digest.to_string(),
                                "size": size,
                            }));
                        }
                    }
                    let index = json!({
                        "schemaVersion": 2,
                        "mediaType": media_type::IMAGE_INDEX,
                        "manifests": entries,
                    });
                    let described = p.blob(serde_json::to_vec(&index).unwrap(), None);
                    p.indexes.push(described);
                }
                _ => {
                    // Reorder: move the first member to the end.
                    if !p.members.is_empty() {
                        let m = p.members.remove(0);
                        p.members.push(m);
                    }
                }
            }
        }
        render(&p.members)
    }
}

fn render(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_size(m.data.len() as u64);
        {
            let u = h.as_ustar_mut().unwrap();
            let n = m.name.len().min(100);
            u.name[..n].copy_from_slice(&m.name.as_bytes()[..n]);
            let l = m.link.len().min(100);
            u.linkname[..l].copy_from_slice(&m.link.as_bytes()[..l]);
        }
        h.as_mut_bytes()[156] = m.typeflag;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The archive as the `tar` crate reads it: regular members by name (`./` dropped), in
/// order, or `None` when it cannot read it to the end. A stream that stops after an entry's
/// data, short of its final padding and end blocks, is read as ended there (as Go, GNU tar
/// and ocikit read what umoci writes; the `tar` crate wants the padding).
fn reference(tar_bytes: &[u8]) -> Option<Vec<(String, tar::EntryType, Vec<u8>)>> {
    read_members(tar_bytes).or_else(|| {
        let mut padded = tar_bytes.to_vec();
        padded.resize(padded.len().div_ceil(512) * 512 + 1024, 0);
        read_members(&padded)
    })
}

fn read_members(tar_bytes: &[u8]) -> Option<Vec<(String, tar::EntryType, Vec<u8>)>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let name = entry.path().ok()?.to_string_lossy().into_owned();
        let name = name.strip_prefix("./").unwrap_or(&name).to_owned();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        out.push((name, kind, data));
    }
    Some(out)
}

/// The one member named `name` that is not a directory (import skips those), if exactly
/// one is.
fn member<'a>(members: &'a [(String, tar::EntryType, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let mut found = members
        .iter()
        .filter(|(n, kind, _)| n == name && !kind.is_dir());
    let first = found.next()?;
    assert!(
        found.next().is_none(),
        "two members named {name:?} accepted"
    );
    Some(&first.2)
}

fn check_error(err: &Error) {
    match err {
        Error::Archive { .. }
        | Error::InvalidIndex { .. }
        | Error::InvalidTag { .. }
        | Error::InvalidDocument { .. }
        | Error::UnsupportedMediaType { .. }
        | Error::GraphTooLarge { .. }
        | Error::IndexTooDeep { .. }
        | Error::Store(_)
        | Error::Codec(_) => {}
        // A document of the archive's graph, named by digest.
        Error::Copy { source, .. } => check_error(source),
        other => panic!("unexpected error kind: {other:?}"),
    }
}

/// fsck's verdict on what was stored: nothing reachable missing, corrupt, unverifiable or
/// an invalid document (and, for docker imports, every diffID right).
async fn check_stored(layout: &Layout, docker: bool) {
    let report = layout
        .fsck(&FsckOptions::new().with_diff_ids(docker).with_concurrency(1))
        .await
        .unwrap();
    for problem in &report.problems {
        let bad = match &problem.kind {
            ProblemKind::Missing
            | ProblemKind::DigestMismatch { .. }
            | ProblemKind::SizeMismatch { .. }
            | ProblemKind::Unverifiable
            | ProblemKind::InvalidDocument { .. } => true,
            ProblemKind::DiffIdMismatch { .. } | ProblemKind::DiffIdCount { .. } => docker,
            _ => false,
        };
        assert!(!bad, "an import stored {problem:?}");
    }
}

/// Every blob the layout holds under a name the archive has is that member's bytes.
async fn check_blobs(layout: &Layout, members: &[(String, tar::EntryType, Vec<u8>)]) {
    use ocikit_store::StoreExt;
    for (name, kind, data) in members {
        let Some(encoded) = name.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let Ok(digest) = Digest::parse(&format!("sha256:{encoded}")) else {
            continue;
        };
        if let Some(stored) = layout.store().get_bytes(&digest, 1 << 20).await.unwrap() {
            assert!(kind.is_file());
            assert_eq!(&stored[..], &data[..], "{name} stored with other bytes");
        }
    }
}

/// Every document the imported entries reach, by every descriptor that names it, parses
/// as the media type that descriptor claims (a blob named once as a config and once as a
/// manifest must be both). Walked here, over the `tar` crate's members, without the
/// layout's walk.
fn check_claims(members: &[(String, tar::EntryType, Vec<u8>)], roots: &[Descriptor]) {
    let mut seen = std::collections::HashSet::new();
    let mut queue: Vec<Descriptor> = roots.to_vec();
    while let Some(d) = queue.pop() {
        let media_type = d.media_type().to_string();
        if !crate::document::is_document(&media_type)
            || !seen.insert((d.digest().to_string(), media_type))
        {
            continue;
        }
        let digest = Digest::parse(d.digest().as_ref()).unwrap();
        let name = format!("blobs/{}/{}", digest.algorithm(), digest.encoded());
        let bytes = member(members, &name)
            .unwrap_or_else(|| panic!("imported a graph without its document {name}"));
        let document = crate::document::parse(&d, bytes::Bytes::copy_from_slice(bytes))
            .unwrap_or_else(|e| {
                panic!("imported {name}, which is not what a descriptor claims: {e}")
            });
        queue.extend(document.children());
    }
}

fn entries_of(layout_entries: Vec<(Option<String>, Descriptor)>) -> Vec<(Option<String>, Digest)> {
    let mut out: Vec<_> = layout_entries
        .into_iter()
        .map(|(t, d)| (t, Digest::parse(d.digest().as_ref()).unwrap()))
        .collect();
    out.sort();
    out
}

async fn oci_import(tar_bytes: &[u8]) {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let result = oci::import(&layout, tar_bytes, &oci::ImportOptions::new()).await;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            check_error(&err);
            assert!(
                layout.entries().await.unwrap().is_empty(),
                "a failed import tagged"
            );
            check_stored(&layout, false).await;
            return;
        }
    };
    let members = reference(tar_bytes).expect("imported what the tar crate cannot read");
    let index: Value = serde_json::from_slice(member(&members, "index.json").unwrap()).unwrap();
    let listed: Vec<Descriptor> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(
        report.entries, listed,
        "imported entries differ from index.json"
    );
    let marker: Value = serde_json::from_slice(member(&members, "oci-layout").unwrap()).unwrap();
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    check_blobs(&layout, &members).await;
    check_claims(&members, &report.entries);
    check_stored(&layout, false).await;

    // Exported and imported again: the same entries.
    let entries = entries_of(layout.entries().await.unwrap());
    let (exported, _) = oci::export(&layout, None, Vec::new(), &oci::ExportOptions::new())
        .await
        .unwrap();
    let again = Layout::create(MemoryStore::new()).await.unwrap();
    oci::import(&again, &exported[..], &oci::ImportOptions::new())
        .await
        .unwrap();
    assert_eq!(entries_of(again.entries().await.unwrap()), entries);
}

/// A docker image as the oracle compares them: tags, config, diffIDs.
type Image = (Vec<String>, Digest, Vec<Digest>);

fn images_of(report: &docker::ImportReport) -> Vec<Image> {
    report
        .images
        .iter()
        .map(|i| (i.tags.clone(), i.config.clone(), i.diff_ids.clone()))
        .collect()
}

async fn docker_import(tar_bytes: &[u8]) {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let result = docker::import(&layout, tar_bytes, &docker::Options::new()).await;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            check_error(&err);
            assert!(
                layout.entries().await.unwrap().is_empty(),
                "a failed import tagged"
            );
            check_stored(&layout, true).await;
            return;
        }
    };
    let members = reference(tar_bytes).expect("imported what the tar crate cannot read");
    let manifest: Value =
        serde_json::from_slice(member(&members, "manifest.json").unwrap()).unwrap();
    let listed = manifest.as_array().unwrap();
    assert_eq!(report.images.len(), listed.len());
    let by_name: BTreeMap<&str, &[u8]> = members
        .iter()
        .filter(|(_, kind, _)| kind.is_file())
        .map(|(n, _, d)| (n.as_str(), &d[..]))
        .collect();
    for (image, item) in report.images.iter().zip(listed) {
        let tags: Vec<String> = item["RepoTags"]
            .as_array()
            .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(image.tags, tags);
        let config_name = item["Config"].as_str().unwrap();
        let config_name = config_name.strip_prefix("./").unwrap_or(config_name);
        if let Some(config) = by_name.get(config_name) {
            assert_eq!(image.config, sha(config), "config digest of {config_name}");
            let config: Value = serde_json::from_slice(config).unwrap();
            let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| Digest::parse(d.as_str().unwrap()).unwrap())
                .collect();
            assert_eq!(image.diff_ids, diff_ids);
        }
        assert_eq!(
            item["Layers"].as_array().map_or(0, Vec::len),
            image.diff_ids.len()
        );
    }
    check_blobs(&layout, &members).await;
    check_stored(&layout, true).await;

    // Exported (each tagged image once, under a name of the oracle's) and imported again:
    // the same images.
    let names: Vec<(String, String)> = report
        .images
        .iter()
        .enumerate()
        .filter_map(|(i, image)| Some((image.tags.first()?.clone(), format!("fuzz/image{i}:t"))))
        .collect();
    if names.is_empty() {
        return;
    }
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(t, r)| (t.as_str(), r.as_str()))
        .collect();
    let (exported, _) = docker::export(&layout, &pairs, Vec::new(), &docker::Options::new())
        .await
        .unwrap();
    let again = Layout::create(MemoryStore::new()).await.unwrap();
    let second = docker::import(&again, &exported[..], &docker::Options::new())
        .await
        .unwrap();
    let contents = |images: Vec<Image>| {
        let mut out: Vec<(Digest, Vec<Digest>)> =
            images.into_iter().map(|(_, c, d)| (c, d)).collect();
        out.sort();
        out.dedup();
        out
    };
    let exported_images: Vec<Image> = images_of(&report)
        .into_iter()
        .filter(|(tags, _, _)| !tags.is_empty())
        .collect();
    assert_eq!(contents(images_of(&second)), contents(exported_images));
}

/// The fuzz entry point.
pub fn archive_import(data: &[u8]) {
    let raw = data.len() >= 512 && data.get(257..262) == Some(b"ustar".as_slice());
    let tar_bytes = if raw {
        data.to_vec()
    } else {
        Program::run(&mut Input { data, pos: 0 })
    };
    runtime().block_on(async {
        oci_import(&tar_bytes).await;
        docker_import(&tar_bytes).await;
    });
}
