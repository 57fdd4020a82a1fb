//! Per-repository metadata in the content store's documents (key scheme in [`crate::keys`]):
//! blob links, manifest records, tags, referrers and the catalog. Every change is a single
//! document write, conditional where a lost update could matter, so several registry
//! processes sharing one store stay consistent.

use std::collections::BTreeMap;

use bytes::Bytes;
use ocikit_digest::Digest;
use ocikit_store::{DocumentKey, Precondition, Store, Version};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, keys};

/// How often a compare-and-swap edit is retried after losing to another writer.
const MAX_ATTEMPTS: usize = 1000;

/// A blob linked into a repository.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BlobLink {
    pub(crate) size: u64,
    /// When the link was last written (a push or a mount), in milliseconds since the Unix
    /// epoch: garbage collection never unlinks a blob within its grace period of this.
    /// Links written before the field existed lack it; the collector stamps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) linked_ms: Option<u64>,
}

/// A manifest pushed to a repository: how to serve it and what it refers to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ManifestRecord {
    #[serde(rename = "mediaType")]
    pub(crate) media_type: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<Digest>,
    /// When the manifest was last pushed, in milliseconds since the Unix epoch: garbage
    /// collection never deletes an untagged manifest within its grace period of this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pushed_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TagRecord {
    digest: Digest,
}

/// One entry of a referrers list: the descriptor the referrers API returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Referrer {
    #[serde(rename = "mediaType")]
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ReferrerList {
    manifests: Vec<Referrer>,
}

/// What an edit function decides.
pub(crate) enum Edit<T> {
    Keep,
    Write(T),
    Delete,
}

pub(crate) async fn read_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &DocumentKey,
) -> Result<Option<(T, Version)>> {
    let Some(doc) = store.read_document(key).await? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&doc.bytes).map_err(|source| Error::Metadata {
        key: key.to_string(),
        source,
    })?;
    Ok(Some((value, doc.version)))
}

fn to_bytes<T: Serialize>(key: &DocumentKey, value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| Error::Metadata {
            key: key.to_string(),
            source,
        })
}

pub(crate) async fn write_json<T: Serialize>(
    store: &dyn Store,
    key: &DocumentKey,
    value: &T,
    precondition: Precondition,
) -> Result<Version> {
    Ok(store
        .write_document(key, to_bytes(key, value)?, precondition)
        .await?)
}

/// Read, edit, compare-and-swap, retrying when another writer came first.
pub(crate) async fn update<T, F>(store: &dyn Store, key: &DocumentKey, mut edit: F) -> Result<()>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Edit<T>,
{
    for _ in 0..MAX_ATTEMPTS {
        let current = read_json::<T>(store, key).await?;
        let (value, precondition) = match current {
            Some((value, version)) => (Some(value), Precondition::Matches(version)),
            None => (None, Precondition::MustNotExist),
        };
        let result = match edit(value) {
            Edit::Keep => return Ok(()),
            Edit::Write(new) => store
                .write_document(key, to_bytes(key, &new)?, precondition)
                .await
                .map(|_| ()),
            Edit::Delete if precondition == Precondition::MustNotExist => return Ok(()),
            Edit::Delete => store.delete_document(key, precondition).await.map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(ocikit_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ocikit_store::Error::Conflict {
        key: key.to_string(),
    }
    .into())
}

/// Whether repository `name` exists (something was pushed to it).
pub(crate) async fn repository_exists(store: &dyn Store, name: &str) -> Result<bool> {
    Ok(store
        .read_document(&keys::catalog_marker(name)?)
        .await?
        .is_some())
}

/// Records that repository `name` exists.
pub(crate) async fn ensure_repository(store: &dyn Store, name: &str) -> Result<()> {
    let key = keys::catalog_marker(name)?;
    if store.read_document(&key).await?.is_some() {
        return Ok(());
    }
    match store
        .write_document(&key, Bytes::from_static(b"{}"), Precondition::MustNotExist)
        .await
    {
        Ok(_) | Err(ocikit_store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Every repository, sorted.
pub(crate) async fn catalog(store: &dyn Store) -> Result<Vec<String>> {
    let keys = store.list_documents(keys::CATALOG_PREFIX).await?;
    let mut names: Vec<String> = keys
        .iter()
        .filter_map(keys::name_of_catalog_marker)
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

pub(crate) async fn link_blob(
    store: &dyn Store,
    name: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    ensure_repository(store, name).await?;
    write_json(
        store,
        &keys::blob_link(name, digest)?,
        &BlobLink {
            size,
            linked_ms: Some(crate::upload::now()),
        },
        Precondition::None,
    )
    .await?;
    Ok(())
}

pub(crate) async fn blob_link(
    store: &dyn Store,
    name: &str,
    digest: &Digest,
) -> Result<Option<BlobLink>> {
    Ok(read_json(store, &keys::blob_link(name, digest)?)
        .await?
        .map(|(link, _)| link))
}

pub(crate) async fn unlink_blob(store: &dyn Store, name: &str, digest: &Digest) -> Result<bool> {
    Ok(store
        .delete_document(&keys::blob_link(name, digest)?, Precondition::None)
        .await?)
}

pub(crate) async fn put_manifest(
    store: &dyn Store,
    name: &str,
    digest: &Digest,
    record: &ManifestRecord,
) -> Result<()> {
    ensure_repository(store, name).await?;
    write_json(
        store,
        &keys::manifest(name, digest)?,
        record,
        Precondition::None,
    )
    .await?;
    Ok(())
}

pub(crate) async fn manifest(
    store: &dyn Store,
    name: &str,
    digest: &Digest,
) -> Result<Option<ManifestRecord>> {
    Ok(read_json(store, &keys::manifest(name, digest)?)
        .await?
        .map(|(record, _)| record))
}

/// Deletes a manifest and every tag pointing at it, and removes it from its subject's
/// referrers; returns whether it existed.
pub(crate) async fn delete_manifest(
    store: &dyn Store,
    name: &str,
    digest: &Digest,
) -> Result<bool> {
    let key = keys::manifest(name, digest)?;
    let Some((record, _)) = read_json::<ManifestRecord>(store, &key).await? else {
        return Ok(false);
    };
    for tag_key in store.list_documents(&keys::tags_prefix(name)).await? {
        let Some((tag, version)) = read_json::<TagRecord>(store, &tag_key).await? else {
            continue;
        };
        if &tag.digest == digest {
            // Conditional: a tag moved to another manifest meanwhile stays.
            match store
                .delete_document(&tag_key, Precondition::Matches(version))
                .await
            {
                Ok(_) | Err(ocikit_store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(subject) = &record.subject {
        remove_referrer(store, name, subject, digest).await?;
    }
    store.delete_document(&key, Precondition::None).await?;
    Ok(true)
}

pub(crate) async fn set_tag(
    store: &dyn Store,
    name: &str,
    tag: &str,
    digest: &Digest,
) -> Result<()> {
    write_json(
        store,
        &keys::tag(name, tag)?,
        &TagRecord {
            digest: digest.clone(),
        },
        Precondition::None,
    )
    .await?;
    Ok(())
}

pub(crate) async fn tag(store: &dyn Store, name: &str, tag: &str) -> Result<Option<Digest>> {
    Ok(read_json::<TagRecord>(store, &keys::tag(name, tag)?)
        .await?
        .map(|(t, _)| t.digest))
}

pub(crate) async fn delete_tag(store: &dyn Store, name: &str, tag: &str) -> Result<bool> {
    Ok(store
        .delete_document(&keys::tag(name, tag)?, Precondition::None)
        .await?)
}

pub(crate) async fn add_referrer(
    store: &dyn Store,
    name: &str,
    subject: &Digest,
    referrer: Referrer,
) -> Result<()> {
    update::<ReferrerList, _>(store, &keys::referrers(name, subject)?, |list| {
        let mut list = list.unwrap_or_default();
        if list.manifests.contains(&referrer) {
            return Edit::Keep;
        }
        list.manifests.retain(|r| r.digest != referrer.digest);
        list.manifests.push(referrer.clone());
        Edit::Write(list)
    })
    .await
}

pub(crate) async fn remove_referrer(
    store: &dyn Store,
    name: &str,
    subject: &Digest,
    digest: &Digest,
) -> Result<()> {
    update::<ReferrerList, _>(store, &keys::referrers(name, subject)?, |list| {
        let Some(mut list) = list else {
            return Edit::Keep;
        };
        let before = list.manifests.len();
        list.manifests.retain(|r| &r.digest != digest);
        match list.manifests.len() {
            0 => Edit::Delete,
            n if n == before => Edit::Keep,
            _ => Edit::Write(list),
        }
    })
    .await
}

pub(crate) async fn referrers(
    store: &dyn Store,
    name: &str,
    subject: &Digest,
) -> Result<Vec<Referrer>> {
    Ok(
        read_json::<ReferrerList>(store, &keys::referrers(name, subject)?)
            .await?
            .map(|(list, _)| list.manifests)
            .unwrap_or_default(),
    )
}
