//! `inspect` and `cat`: looking inside, by [`ocikit::transport::inspect`] and
//! [`ocikit::transport::cat`]; this module renders (`tags` is in `manage`).

use anyhow::{Context, Result};
use ocikit::digest::Digest;
use ocikit::transport::{ImageSummary, IndexSummary, Summary};
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;

use super::copy::TransferArgs;
use crate::location::Location;
use crate::output::{Output, human_size};

pub(crate) async fn inspect(
    location: &Location,
    raw: bool,
    config: bool,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let registry = transfer.source_options()?;
    if raw {
        let bytes = ocikit::transport::inspect_raw(location, &registry).await?;
        let mut stdout = tokio::io::stdout();
        stdout.write_all(&bytes).await?;
        stdout.flush().await?;
        return Ok(());
    }
    if config {
        let value = ocikit::transport::inspect_config(location, &registry).await?;
        let text = || serde_json::to_string_pretty(&value).unwrap_or_default();
        return out.answer(&value, text, text);
    }
    match ocikit::transport::inspect(location, &registry).await? {
        Summary::Image(summary) => out.answer(
            &summary,
            || human_image(&summary),
            || format!("{}\n", summary.digest),
        ),
        Summary::Index(summary) => out.answer(
            &summary,
            || human_index(&summary),
            || format!("{}\n", summary.digest),
        ),
        other => anyhow::bail!("inspect found something this version cannot show: {other:?}"),
    }
}

fn human_index(summary: &IndexSummary) -> String {
    let mut text = String::new();
    if let Some(name) = &summary.name {
        text.push_str(&format!("Name:       {name}\n"));
    }
    text.push_str(&format!(
        "Digest:     {}\nMediaType:  {}\n",
        summary.digest, summary.media_type
    ));
    if let Some(tags) = &summary.repo_tags {
        text.push_str(&format!("RepoTags:   {}\n", tags.join(", ")));
    }
    text.push_str("Manifests:\n");
    for m in &summary.manifests {
        text.push_str(&format!(
            "  {}  {:>10}  {}\n",
            m.digest,
            human_size(m.size),
            m.platform.as_deref().unwrap_or("-")
        ));
    }
    text.push_str(&human_annotations(summary.annotations.as_ref()));
    text
}

fn human_image(s: &ImageSummary) -> String {
    let mut text = String::new();
    if let Some(name) = &s.name {
        text.push_str(&format!("Name:       {name}\n"));
    }
    text.push_str(&format!(
        "Digest:     {}\nMediaType:  {}\n",
        s.digest, s.media_type
    ));
    if let Some(tags) = &s.repo_tags {
        text.push_str(&format!("RepoTags:   {}\n", tags.join(", ")));
    }
    if let Some(version) = &s.docker_version {
        text.push_str(&format!("DockerVersion: {version}\n"));
    }
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
    text.push_str(&human_annotations(s.annotations.as_ref()));
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
fn human_annotations(annotations: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = annotations.filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let mut text = "Annotations:\n".to_string();
    for (key, value) in map {
        text.push_str(&format!("  {key}: {value}\n"));
    }
    text
}

pub(crate) async fn cat(location: &Location, digest: &str) -> Result<()> {
    let digest: Digest = digest
        .parse()
        .with_context(|| format!("`{digest}` is not a valid digest"))?;
    ocikit::transport::cat(location, &digest, &mut tokio::io::stdout()).await?;
    Ok(())
}
