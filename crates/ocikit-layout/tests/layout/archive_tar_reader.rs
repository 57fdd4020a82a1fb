//! Archive import reads tar with `ocikit-codec`'s strict reader (the one that reads layers):
//! archives that tar parsers read differently are refused, not read one way.
#![cfg_attr(not(feature = "gzip"), allow(unused_imports, dead_code))]

use ocikit_layout::Layout;
use ocikit_layout::archive::ArchiveErrorKind;
use ocikit_layout::archive::oci::{ImportOptions, import};
use ocikit_store::MemoryStore;

use super::copy::make_image;
use super::oci_archive::{OCI_LAYOUT, blob_entries, index_json};

/// A PAX record `key=value`, with its length prefix.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// An extension header of `typeflag` carrying `records`.
fn extension(builder: &mut tar::Builder<Vec<u8>>, typeflag: u8, records: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_entry_type(tar::EntryType::new(typeflag));
    h.set_mode(0o644);
    h.set_size(records.len() as u64);
    h.set_cksum();
    builder.append(&h, records).unwrap();
}

fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    builder.append_data(&mut h, path, data).unwrap();
}

/// A valid oci-archive of one image tagged `v1`; `spoil` adds extension headers before the
/// entry it is given the name of.
async fn archive_with(spoil: impl Fn(&mut tar::Builder<Vec<u8>>, &str)) -> Vec<u8> {
    let scratch = Layout::create(MemoryStore::new()).await.unwrap();
    let image = make_image(&scratch, "tar-reader").await;
    let mut entries = vec![("oci-layout".to_string(), OCI_LAYOUT.as_bytes().to_vec())];
    entries.extend(blob_entries(&scratch, &image).await);
    entries.push(("index.json".into(), index_json(&[("v1", &image)])));
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in &entries {
        spoil(&mut builder, path);
        file(&mut builder, path, data);
    }
    builder.into_inner().unwrap()
}

async fn import_kind(tar: &[u8]) -> Option<(String, ArchiveErrorKind)> {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let result = import(&layout, tar, &ImportOptions::new()).await;
    match result {
        Ok(_) => {
            let tags = layout.tags().await.unwrap();
            assert_eq!(tags.len(), 1);
            assert_eq!(tags[0].0, "v1");
            None
        }
        Err(ocikit_layout::Error::Archive { entry, kind, .. }) => {
            assert!(
                layout.tags().await.unwrap().is_empty(),
                "a refused import tagged"
            );
            Some((entry, *kind))
        }
        Err(other) => panic!("expected an archive error, got {other:?}"),
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn archives_tar_parsers_read_differently_are_refused() {
    // The same archive with harmless PAX records (a comment) imports.
    let fine = archive_with(|b, path| {
        if path == "index.json" {
            extension(b, b'x', &pax_record("comment", "made by hand"));
        }
    })
    .await;
    assert_eq!(import_kind(&fine).await, None);

    // A PAX global header naming a path: GNU tar renames every entry after it, Go and the
    // `tar` crate ignore it.
    let global = archive_with(|b, path| {
        if path == "oci-layout" {
            extension(b, b'g', &pax_record("path", "index.json"));
        }
    })
    .await;
    let (entry, kind) = import_kind(&global).await.unwrap();
    assert_eq!(
        (entry.as_str(), kind),
        ("(start of archive)", ArchiveErrorKind::Corrupt)
    );

    // Two PAX headers for one entry naming two paths.
    let two = archive_with(|b, path| {
        if path == "index.json" {
            extension(b, b'x', &pax_record("path", "oci-layout"));
            extension(b, b'x', &pax_record("path", "index.json"));
        }
    })
    .await;
    let (entry, kind) = import_kind(&two).await.unwrap();
    assert!(entry.starts_with("(entry after blobs/"), "{entry}");
    assert_eq!(kind, ArchiveErrorKind::Corrupt);

    // Extension records under the cap one by one, above it together (a GNU long name and a
    // PAX record of 600 KiB each): refused before they are buffered.
    let big = archive_with(|b, path| {
        if path == "index.json" {
            extension(b, b'x', &pax_record("comment", &"c".repeat(600 << 10)));
            let mut name = "n".repeat(600 << 10).into_bytes();
            name.push(0);
            extension(b, b'L', &name);
        }
    })
    .await;
    let (_, kind) = import_kind(&big).await.unwrap();
    assert_eq!(kind, ArchiveErrorKind::TooLarge { limit: 1 << 20 });
}
