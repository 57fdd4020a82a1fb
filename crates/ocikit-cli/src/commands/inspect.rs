//! `inspect` and `cat`: looking inside.

use anyhow::{Context, Result, bail};
use ocikit::digest::Digest;
use ocikit::digest::platform;
use ocikit::layout::{Document, Layout};
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::copy::TransferArgs;
use super::open_layout;
use crate::location::Location;
use crate::output::{Output, human_size};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
}

/// What `inspect` shows of a manifest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageSummary {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    platform: Option<String>,
    created: Option<String>,
    config: Blob,
    layers: Vec<Blob>,
    /// The config's `config` object (Env, Entrypoint, Cmd, WorkingDir, User, Labels...),
    /// when the config is an image config.
    #[serde(rename = "runConfig")]
    run_config: Option<Value>,
    annotations: Value,
}

/// What `inspect` shows of an index.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexSummary {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    manifests: Vec<IndexEntry>,
    annotations: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
    platform: Option<String>,
}

fn blob(d: &ocikit::digest::oci_spec::image::Descriptor) -> Blob {
    Blob {
        digest: d.digest().to_string(),
        media_type: d.media_type().to_string(),
        size: d.size(),
    }
}

async fn read_config(
    layout: &Layout,
    descriptor: &ocikit::digest::oci_spec::image::Descriptor,
) -> Result<Option<Value>> {
    let kind = ocikit::digest::media_type::classify(descriptor.media_type().as_ref());
    if !kind.is_config_like() {
        return Ok(None);
    }
    let bytes = layout
        .read_blob(descriptor)
        .await
        .with_context(|| format!("cannot read the config {}", descriptor.digest()))?;
    let value = ocikit::digest::json::parse_strict(&bytes)
        .with_context(|| format!("the config {} is not valid JSON", descriptor.digest()))?;
    Ok(Some(value))
}

pub(crate) async fn inspect(
    location: &Location,
    raw: bool,
    config: bool,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let (layout, descriptor) =
        ocikit::transport::open_image(location, &transfer.source_options()?, !raw, "inspect")
            .await?;
    let document = layout
        .read_document(&descriptor)
        .await
        .with_context(|| format!("cannot read {}", descriptor.digest()))?;
    if raw {
        let bytes = match &document {
            Document::Manifest { bytes, .. } | Document::Index { bytes, .. } => bytes.clone(),
            _ => layout.read_blob(&descriptor).await?,
        };
        let mut stdout = tokio::io::stdout();
        stdout.write_all(&bytes).await?;
        stdout.flush().await?;
        return Ok(());
    }
    match document {
        Document::Manifest { manifest, .. } => {
            let config_value = read_config(&layout, manifest.config()).await?;
            if config {
                let Some(value) = config_value else {
                    bail!(
                        "the config of {} is {}, not an image config",
                        descriptor.digest(),
                        manifest.config().media_type()
                    );
                };
                let text = || serde_json::to_string_pretty(&value).unwrap_or_default();
                return out.answer(&value, text, text);
            }
            let get = |key: &str| config_value.as_ref().and_then(|c| c.get(key)).cloned();
            let platform = descriptor
                .platform()
                .as_ref()
                .map(platform::format)
                .or_else(|| {
                    let os = get("os")?.as_str()?.to_string();
                    let arch = get("architecture")?.as_str()?.to_string();
                    let variant = get("variant").and_then(|v| v.as_str().map(str::to_string));
                    Some(platform::format(&platform::build(
                        &os,
                        &arch,
                        variant.as_deref(),
                    )))
                });
            let summary = ImageSummary {
                digest: descriptor.digest().to_string(),
                media_type: descriptor.media_type().to_string(),
                artifact_type: manifest.artifact_type().as_ref().map(|t| t.to_string()),
                platform,
                created: get("created").and_then(|c| c.as_str().map(str::to_string)),
                config: blob(manifest.config()),
                layers: manifest.layers().iter().map(blob).collect(),
                run_config: get("config"),
                annotations: serde_json::to_value(manifest.annotations())?,
            };
            out.answer(
                &summary,
                || human_image(&summary),
                || format!("{}\n", summary.digest),
            )
        }
        Document::Index { index, .. } => {
            if config {
                bail!(
                    "{} is an index: inspect one of its manifests (by digest) for a config",
                    descriptor.digest()
                );
            }
            let summary = IndexSummary {
                digest: descriptor.digest().to_string(),
                media_type: descriptor.media_type().to_string(),
                manifests: index
                    .manifests()
                    .iter()
                    .map(|m| IndexEntry {
                        digest: m.digest().to_string(),
                        media_type: m.media_type().to_string(),
                        size: m.size(),
                        platform: m.platform().as_ref().map(platform::format),
                    })
                    .collect(),
                annotations: serde_json::to_value(index.annotations())?,
            };
            out.answer(
                &summary,
                || {
                    let mut text = format!(
                        "Digest:     {}\nMediaType:  {}\nManifests:\n",
                        summary.digest, summary.media_type
                    );
                    for m in &summary.manifests {
                        text.push_str(&format!(
                            "  {}  {:>10}  {}\n",
                            m.digest,
                            human_size(m.size),
                            m.platform.as_deref().unwrap_or("-")
                        ));
                    }
                    text.push_str(&human_annotations(&summary.annotations));
                    text
                },
                || format!("{}\n", summary.digest),
            )
        }
        _ => bail!(
            "{} is a {}, not a manifest or index",
            descriptor.digest(),
            descriptor.media_type()
        ),
    }
}

fn human_image(s: &ImageSummary) -> String {
    let mut text = format!("Digest:     {}\nMediaType:  {}\n", s.digest, s.media_type);
    if let Some(t) = &s.artifact_type {
        text.push_str(&format!("Artifact:   {t}\n"));
    }
    text.push_str(&format!(
        "Platform:   {}\nCreated:    {}\nConfig:     {} ({})\nLayers:\n",
        s.platform.as_deref().unwrap_or("-"),
        s.created.as_deref().unwrap_or("-"),
        s.config.digest,
        s.config.media_type
    ));
    for layer in &s.layers {
        text.push_str(&format!(
            "  {}  {:>10}  {}\n",
            layer.digest,
            human_size(layer.size),
            layer.media_type
        ));
    }
    text.push_str(&human_annotations(&s.annotations));
    if let Some(run) = &s.run_config {
        for key in [
            "Entrypoint",
            "Cmd",
            "Env",
            "WorkingDir",
            "User",
            "Labels",
            "ExposedPorts",
        ] {
            if let Some(value) = run.get(key).filter(|v| !v.is_null()) {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
    }
    text
}

/// `Annotations:` and one `  key: value` line each, sorted; nothing when there are none.
fn human_annotations(annotations: &Value) -> String {
    let Some(map) = annotations.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = "Annotations:\n".to_string();
    for (key, value) in pairs {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        text.push_str(&format!("  {key}: {value}\n"));
    }
    text
}

pub(crate) async fn cat(location: &Location, digest: &str) -> Result<()> {
    let (path, selector) = location.oci("cat")?;
    if selector.is_some() {
        bail!("cat takes a layout (oci:PATH) and a digest");
    }
    let digest: Digest = digest
        .parse()
        .with_context(|| format!("`{digest}` is not a valid digest"))?;
    let layout = open_layout(path).await?;
    ocikit::transport::write_blob(&layout, path, &digest, &mut tokio::io::stdout()).await?;
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tags {
    repository: String,
    tags: Vec<String>,
}

/// `tags docker://HOST/NAME`: the repository's tags.
pub(crate) async fn tags(location: &Location, transfer: &TransferArgs, out: &Output) -> Result<()> {
    let Location::Docker {
        registry,
        repository,
        ..
    } = location
    else {
        bail!(
            "tags lists a registry repository (docker://HOST/NAME), not `{location}`; for a layout use ls"
        );
    };
    let client = transfer.client(registry, true)?;
    let tags = client
        .tags(repository)
        .await
        .with_context(|| format!("cannot list the tags of {location}"))?;
    let shown = Tags {
        repository: format!("{registry}/{repository}"),
        tags,
    };
    let lines = || shown.tags.iter().map(|t| format!("{t}\n")).collect();
    out.answer(&shown, lines, lines)
}
