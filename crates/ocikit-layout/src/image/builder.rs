//! [`ImageBuilder`]: config, layers and manifest of one image.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ocikit_codec::Limits;
use ocikit_codec::build::{BuildOptions, build_layer};
use ocikit_codec::compression::Compression;
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType, Platform};
use ocikit_digest::{Digest, descriptor, json, media_type, platform};
use serde_json::{Map, Value};
use tokio::io::AsyncRead;

use super::{
    BASE_DIGEST_ANNOTATION, ConfigChanges, ImageConfig, MISSING_HISTORY_COMMENT, format_created,
    format_created_utc, invalid_image,
};
use crate::platform::{PlatformQuery, resolve};
use crate::{Error, Layout, Result, bridge};

/// How a layer being added is compressed and built, and what its history entry and
/// descriptor annotations say.
#[derive(Clone, Debug)]
pub struct LayerSpec {
    layer: LayerOptions,
    build: BuildOptions,
    created_by: Option<String>,
    comment: Option<String>,
    author: Option<String>,
    annotations: BTreeMap<String, String>,
}

impl Default for LayerSpec {
    fn default() -> LayerSpec {
        LayerSpec::new()
    }
}

impl LayerSpec {
    /// gzip at the default level, the default [`BuildOptions`] (mtimes clamped to the
    /// image's SOURCE_DATE_EPOCH, if it has one), an empty history entry.
    pub fn new() -> LayerSpec {
        LayerSpec {
            layer: LayerOptions::new(Compression::Gzip),
            build: BuildOptions::new(),
            created_by: None,
            comment: None,
            author: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Compress with `compression` (gzip, zstd or none).
    pub fn compression(mut self, compression: Compression) -> LayerSpec {
        self.layer.compression = compression;
        self
    }

    /// Compress at `level`.
    pub fn level(mut self, level: i32) -> LayerSpec {
        self.layer.level = Some(level);
        self
    }

    /// All of the codec's layer options (compression, level, threads, block size).
    pub fn layer_options(mut self, options: LayerOptions) -> LayerSpec {
        self.layer = options;
        self
    }

    /// How a directory is packed (owners, xattrs, prefix, SOURCE_DATE_EPOCH).
    pub fn build_options(mut self, options: BuildOptions) -> LayerSpec {
        self.build = options;
        self
    }

    /// The history entry's `created_by` (the command, as `docker history` shows it).
    pub fn created_by(mut self, created_by: impl Into<String>) -> LayerSpec {
        self.created_by = Some(created_by.into());
        self
    }

    /// The history entry's `comment`.
    pub fn comment(mut self, comment: impl Into<String>) -> LayerSpec {
        self.comment = Some(comment.into());
        self
    }

    /// The history entry's `author`.
    pub fn author(mut self, author: impl Into<String>) -> LayerSpec {
        self.author = Some(author.into());
        self
    }

    /// An annotation on the layer's descriptor.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> LayerSpec {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

#[derive(Clone, Debug)]
enum Created {
    /// SOURCE_DATE_EPOCH (explicit or from the environment) if there is one, else the clock.
    Default,
    At(SystemTime),
    Omit,
}

/// Builds an image: config, layers, manifest. See the [module documentation](super).
///
/// Setters take `&mut self` and return it for chaining; adding a layer is async and
/// returns the layer's descriptor. A failed call leaves the builder as it was.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layout: Layout,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
    created: Created,
    epoch: Option<Option<i64>>,
    /// History entries before this index came with the base image and keep their times.
    base_history: usize,
}

impl ImageBuilder {
    /// A new, empty image for the host platform ([`platform::current`]).
    pub fn new(layout: &Layout) -> ImageBuilder {
        ImageBuilder {
            layout: layout.clone(),
            config: ImageConfig::new(&platform::current()),
            layers: Vec::new(),
            annotations: BTreeMap::new(),
            created: Created::Default,
            epoch: None,
            base_history: 0,
        }
    }

    /// An image based on the image `descriptor` points at (a manifest, or an index resolved
    /// for `platform`): its config (unknown fields included), layers and history are carried
    /// over, and the new manifest is annotated with the base's digest
    /// ([`BASE_DIGEST_ANNOTATION`]). The base's manifest annotations are not carried over.
    pub async fn from_image(
        layout: &Layout,
        descriptor: &Descriptor,
        platform: &PlatformQuery,
    ) -> Result<ImageBuilder> {
        let base = resolve(layout, descriptor, platform).await?;
        let config_digest = base.config_digest()?;
        base.config
            .check_layers(&config_digest, base.manifest.layers().len())?;
        let mut builder = ImageBuilder::new(layout);
        builder.base_history = base.config.history().len();
        builder.config = base.config;
        builder.layers = base.manifest.layers().clone();
        builder.annotations.insert(
            BASE_DIGEST_ANNOTATION.into(),
            base.descriptor.digest().to_string(),
        );
        Ok(builder)
    }

    /// [`ImageBuilder::from_image`] on the image a tag points at.
    pub async fn from_tag(
        layout: &Layout,
        tag: &str,
        platform: &PlatformQuery,
    ) -> Result<ImageBuilder> {
        let descriptor = layout.resolve(tag).await?;
        ImageBuilder::from_image(layout, &descriptor, platform).await
    }

    /// The config as it stands.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The layers so far, base layers first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// Sets the platform: `os`, `architecture`, `variant`, `os.version`, `os.features`
    /// (names normalised: `x86_64` is written `amd64`).
    pub fn platform(&mut self, platform: &Platform) -> &mut Self {
        self.config.set_platform(&platform::normalize(platform));
        self
    }

    fn set_exec(&mut self, key: &str, value: Value) -> &mut Self {
        self.config.exec().insert(key.into(), value);
        self
    }

    fn strings<I, S>(values: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Value::Array(
            values
                .into_iter()
                .map(|s| Value::String(s.into()))
                .collect(),
        )
    }

    /// Sets `Entrypoint`.
    pub fn entrypoint<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set_exec("Entrypoint", Self::strings(args))
    }

    /// Sets `Cmd`.
    pub fn cmd<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set_exec("Cmd", Self::strings(args))
    }

    /// Sets the environment variable `key` to `value`, replacing an existing `key=...` entry
    /// in place (or appending).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.config.set_env(key, value);
        self
    }

    /// Removes the environment variable `key`.
    pub fn remove_env(&mut self, key: &str) -> &mut Self {
        self.config.remove_env(key);
        self
    }

    /// Sets `WorkingDir`.
    pub fn working_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.set_exec("WorkingDir", Value::String(dir.into()))
    }

    /// Sets `User` (`user`, `uid`, `user:group`, `uid:gid`...).
    pub fn user(&mut self, user: impl Into<String>) -> &mut Self {
        self.set_exec("User", Value::String(user.into()))
    }

    /// Sets `StopSignal` (`SIGTERM`, `SIGRTMIN+3`...).
    pub fn stop_signal(&mut self, signal: impl Into<String>) -> &mut Self {
        self.set_exec("StopSignal", Value::String(signal.into()))
    }

    /// Sets the label `key`.
    pub fn label(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.config
            .exec_map("Labels")
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// Removes the label `key`.
    pub fn remove_label(&mut self, key: &str) -> &mut Self {
        self.config.remove_from_exec_map("Labels", key);
        self
    }

    /// Exposes a port (`8080/tcp`, `53/udp`, `80`).
    pub fn expose(&mut self, port: impl Into<String>) -> &mut Self {
        self.config
            .exec_map("ExposedPorts")
            .insert(port.into(), Value::Object(Map::new()));
        self
    }

    /// Declares a volume (`/var/lib/data`).
    pub fn volume(&mut self, path: impl Into<String>) -> &mut Self {
        self.config
            .exec_map("Volumes")
            .insert(path.into(), Value::Object(Map::new()));
        self
    }

    /// Sets any other field of the execution parameters (`config`), such as `Healthcheck`
    /// or `Shell`. The whole config is checked when written.
    pub fn exec_field(&mut self, key: &str, value: Value) -> &mut Self {
        self.set_exec(key, value)
    }

    /// Sets the config's `author`.
    pub fn author(&mut self, author: impl Into<String>) -> &mut Self {
        self.config
            .json
            .insert("author".into(), Value::String(author.into()));
        self
    }

    /// Sets a manifest annotation.
    pub fn annotation(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Removes a manifest annotation.
    pub fn remove_annotation(&mut self, key: &str) -> &mut Self {
        self.annotations.remove(key);
        self
    }

    /// Sets the image's `created` time (and that of the history entries this builder adds).
    pub fn created(&mut self, time: SystemTime) -> &mut Self {
        self.created = Created::At(time);
        self
    }

    /// Leaves `created` out of the config and of new history entries.
    pub fn without_created(&mut self) -> &mut Self {
        self.created = Created::Omit;
        self
    }

    /// Sets SOURCE_DATE_EPOCH explicitly (`None`: none, whatever the environment says): it
    /// becomes `created` (unless [`created`](Self::created) says otherwise) and clamps the
    /// mtimes of layers built from directories whose [`BuildOptions`] name no epoch of
    /// their own. By default it is taken from the `SOURCE_DATE_EPOCH` environment variable.
    pub fn source_date_epoch(&mut self, epoch: Option<i64>) -> &mut Self {
        self.epoch = Some(epoch);
        self
    }

    fn epoch(&self) -> Result<Option<i64>> {
        match self.epoch {
            Some(epoch) => Ok(epoch),
            None => Ok(BuildOptions::from_env()?.source_date_epoch),
        }
    }

    fn created_string(&self) -> Result<Option<String>> {
        use chrono::{DateTime, Utc};
        let outside = || invalid_image("created time is outside the years 0000-9999");
        let time: DateTime<Utc> = match &self.created {
            Created::Omit => return Ok(None),
            Created::At(time) => return format_created(*time).map(Some).ok_or_else(outside),
            Created::Default => match self.epoch()? {
                Some(epoch) => DateTime::from_timestamp(epoch, 0).ok_or_else(|| {
                    invalid_image(format!("SOURCE_DATE_EPOCH {epoch} is out of range"))
                })?,
                None => Utc::now(),
            },
        };
        format_created_utc(time).map(Some).ok_or_else(outside)
    }

    /// Applies `changes` ([`ConfigChanges`]): its config changes to the config, its
    /// annotation changes to the manifest's annotations, its `created` as
    /// [`created`](Self::created). All are checked first; on error nothing changed.
    pub fn apply(&mut self, changes: &ConfigChanges) -> Result<&mut Self> {
        let mut config = self.config.clone();
        changes.apply_to_config(&mut config)?;
        changes.apply_to_annotations(&mut self.annotations)?;
        self.config = config;
        if let Some(time) = changes.created {
            self.created = Created::At(time);
        }
        Ok(self)
    }

    /// Adds a layer packed from the directory `dir` (see [`ocikit_codec::build`]),
    /// compressed as `spec` says, with a history entry; returns its descriptor.
    pub async fn add_layer_from_dir(
        &mut self,
        dir: impl AsRef<Path>,
        spec: LayerSpec,
    ) -> Result<Descriptor> {
        let dir: PathBuf = dir.as_ref().to_path_buf();
        let mut build = spec.build.clone();
        if build.source_date_epoch.is_none() {
            build.source_date_epoch = self.epoch()?;
        }
        let options = spec.layer;
        let info = bridge::write_blob(self.layout.store(), move |out| {
            let mut writer = LayerWriter::new(out, options)?;
            build_layer(&dir, &mut writer, &build)?;
            let (_, info) = writer.finish()?;
            let (digest, size) = (info.digest.clone(), info.size);
            Ok((info, digest, size))
        })
        .await?;
        self.push_layer(
            info.media_type,
            &info.digest,
            info.size,
            &info.diff_id,
            &spec,
        )
    }

    /// Adds a layer from a tar file's bytes (uncompressed, or gzip- or zstd-compressed: told
    /// apart by their magic bytes, as `crane append -f` does), read on a blocking thread,
    /// checked with the applier's strict tar reader as it streams, and compressed as `spec`
    /// says (its build options do not apply); returns its descriptor. The diffID is that of
    /// the uncompressed tar. Input that is not a tar
    /// ([`ocikit_codec::Error::NotTar`]), a truncated tar or one the reader refuses fails,
    /// and nothing is published (see [`LayerWriter::from_tar_file`]).
    pub async fn add_layer_from_tar(
        &mut self,
        tar: impl Read + Send + 'static,
        spec: LayerSpec,
    ) -> Result<Descriptor> {
        let options = spec.layer;
        let info = bridge::write_blob(self.layout.store(), move |out| {
            let (_, info) = LayerWriter::from_tar_file(tar, out, options, Limits::default())?;
            let (digest, size) = (info.digest.clone(), info.size);
            Ok((info, digest, size))
        })
        .await?;
        self.push_layer(
            info.media_type,
            &info.digest,
            info.size,
            &info.diff_id,
            &spec,
        )
    }

    /// [`add_layer_from_tar`](Self::add_layer_from_tar) for an async tar stream: it is read
    /// on this task and handed to the blocking compressor through a bounded channel. An
    /// error reading it fails the layer (as a [`ocikit_store::Error::Stream`]).
    pub async fn add_layer_from_async_tar(
        &mut self,
        tar: impl AsyncRead + Send + Unpin + 'static,
        spec: LayerSpec,
    ) -> Result<Descriptor> {
        let (reader, feed) = bridge::feed(tokio_util::io::ReaderStream::with_capacity(
            tar,
            bridge::CHUNK_SIZE,
        ));
        let options = spec.layer;
        let write = bridge::write_blob(self.layout.store(), move |out| {
            let (_, info) = LayerWriter::from_tar_file(reader, out, options, Limits::default())?;
            let (digest, size) = (info.digest.clone(), info.size);
            Ok((info, digest, size))
        });
        let (fed, written) = futures::join!(feed, write);
        if let Err(e) = fed {
            return Err(Error::Store(ocikit_store::Error::Stream(e)));
        }
        let info = written?;
        self.push_layer(
            info.media_type,
            &info.digest,
            info.size,
            &info.diff_id,
            &spec,
        )
    }

    /// Adds a layer blob that is already in the layout, described by `layer` (its media
    /// type must be a layer type), whose uncompressed content has `diff_id`. The blob must
    /// be stored with the descriptor's size; its diffID is taken on trust (unpacking checks
    /// it). The spec's compression and build options do not apply.
    pub async fn add_layer_blob(
        &mut self,
        layer: &Descriptor,
        diff_id: &Digest,
        spec: LayerSpec,
    ) -> Result<Descriptor> {
        descriptor::check(layer).map_err(|e| Error::InvalidDocument {
            digest: Digest::sha256(b""),
            reason: "invalid layer descriptor".into(),
            source: Some(Box::new(e.into())),
        })?;
        let media_type = layer.media_type().to_string();
        if !media_type::is_layer(&media_type) {
            return Err(Error::UnsupportedMediaType {
                media_type,
                operation: "add as a layer",
            });
        }
        let digest = descriptor::digest_of(layer).map_err(|e| Error::InvalidDocument {
            digest: Digest::sha256(b""),
            reason: "invalid layer digest".into(),
            source: Some(Box::new(e.into())),
        })?;
        let stored = self.layout.store().stat(&digest).await?.ok_or_else(|| {
            Error::Store(ocikit_store::Error::NotFound {
                digest: digest.clone(),
            })
        })?;
        if stored != layer.size() {
            return Err(Error::Store(ocikit_store::Error::SizeMismatch {
                expected: layer.size(),
                actual: stored,
            }));
        }
        let mut descriptor = layer.clone();
        if !spec.annotations.is_empty() {
            let mut annotations = descriptor.annotations().clone().unwrap_or_default();
            annotations.extend(spec.annotations.clone());
            descriptor.set_annotations(Some(annotations));
        }
        self.push_descriptor(descriptor, diff_id, &spec)
    }

    fn push_layer(
        &mut self,
        media_type: &str,
        digest: &Digest,
        size: u64,
        diff_id: &Digest,
        spec: &LayerSpec,
    ) -> Result<Descriptor> {
        let mut descriptor =
            descriptor::new(media_type, digest, size).map_err(|e| Error::InvalidDocument {
                digest: digest.clone(),
                reason: "cannot describe the layer".into(),
                source: Some(Box::new(e.into())),
            })?;
        if !spec.annotations.is_empty() {
            descriptor.set_annotations(Some(spec.annotations.clone().into_iter().collect()));
        }
        self.push_descriptor(descriptor, diff_id, spec)
    }

    fn push_descriptor(
        &mut self,
        descriptor: Descriptor,
        diff_id: &Digest,
        spec: &LayerSpec,
    ) -> Result<Descriptor> {
        self.backfill_history();
        self.config.push_diff_id(diff_id);
        let entry = history_entry(
            spec.created_by.as_deref(),
            spec.comment.as_deref(),
            spec.author.as_deref(),
            false,
        );
        self.config.history_mut().push(entry);
        self.layers.push(descriptor.clone());
        Ok(descriptor)
    }

    /// Base layers without any history get made-up entries, so that history and layers
    /// agree once this builder adds entries.
    fn backfill_history(&mut self) {
        if self.config.history().is_empty() && !self.layers.is_empty() {
            let missing = self.layers.len();
            let history = self.config.history_mut();
            history.clear();
            for _ in 0..missing {
                history.push(history_entry(
                    None,
                    Some(MISSING_HISTORY_COMMENT),
                    None,
                    false,
                ));
            }
            // Made-up entries have no time: they count as base history.
            self.base_history = missing;
        }
    }

    /// Adds a history entry that has no layer (`empty_layer: true`), as `ENV` or `CMD`
    /// instructions leave.
    pub fn add_empty_history(
        &mut self,
        created_by: impl Into<String>,
        comment: Option<String>,
    ) -> &mut Self {
        self.backfill_history();
        let created_by = created_by.into();
        let entry = history_entry(Some(&created_by), comment.as_deref(), None, true);
        self.config.history_mut().push(entry);
        self
    }

    /// The config as it will be written: `created` set, new history entries dated.
    fn final_config(&self) -> Result<ImageConfig> {
        let created = self.created_string()?;
        let mut config = self.config.clone();
        match &created {
            Some(time) => config
                .json
                .insert("created".into(), Value::String(time.clone())),
            None => config.json.remove("created"),
        };
        if let Some(time) = &created {
            let base = self.base_history;
            for entry in config.history_mut().iter_mut().skip(base) {
                if let Value::Object(entry) = entry {
                    entry
                        .entry("created")
                        .or_insert_with(|| Value::String(time.clone()));
                }
            }
        }
        Ok(config)
    }

    /// Writes the config and the manifest (canonical JSON, `mediaType` always written) and
    /// returns the manifest's descriptor, with the config's platform on it. Writing twice
    /// with the same inputs gives the same digest.
    pub async fn write(&self) -> Result<Descriptor> {
        let config = self.final_config()?;
        let config_bytes = config.to_bytes()?;
        let config_digest = Digest::sha256(&config_bytes);
        // Never write what this crate would refuse to read.
        ImageConfig::parse(&config_digest, &config_bytes)?
            .check_layers(&config_digest, self.layers.len())?;
        let config_descriptor = self
            .layout
            .put_blob(media_type::IMAGE_CONFIG, &config_bytes)
            .await?;

        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_descriptor)
            .layers(self.layers.clone())
            .build()
            .map_err(|e| invalid_image(format!("cannot build the manifest: {e}")))?;
        if !self.annotations.is_empty() {
            let annotations: HashMap<String, String> =
                self.annotations.clone().into_iter().collect();
            manifest.set_annotations(Some(annotations));
        }
        let bytes = json::to_canonical_vec(&manifest).map_err(|e| Error::InvalidDocument {
            digest: config_digest.clone(),
            reason: "cannot serialise the manifest".into(),
            source: Some(Box::new(e.into())),
        })?;
        let digest = Digest::sha256(&bytes);
        let mut descriptor =
            descriptor::new(media_type::IMAGE_MANIFEST, &digest, bytes.len() as u64).map_err(
                |e| Error::InvalidDocument {
                    digest: digest.clone(),
                    reason: "cannot describe the manifest".into(),
                    source: Some(Box::new(e.into())),
                },
            )?;
        crate::document::parse(&descriptor, bytes::Bytes::from(bytes.clone()))?;
        self.layout
            .put_blob(media_type::IMAGE_MANIFEST, &bytes)
            .await?;
        descriptor.set_platform(Some(config.platform()));
        Ok(descriptor)
    }

    /// [`write`](Self::write), then points `tag` at the manifest.
    pub async fn write_and_tag(&self, tag: &str) -> Result<Descriptor> {
        crate::index::validate_tag(tag)?;
        let descriptor = self.write().await?;
        self.layout.set_tag(tag, &descriptor).await?;
        Ok(descriptor)
    }
}

fn history_entry(
    created_by: Option<&str>,
    comment: Option<&str>,
    author: Option<&str>,
    empty_layer: bool,
) -> Value {
    let mut entry = Map::new();
    for (key, value) in [
        ("created_by", created_by),
        ("comment", comment),
        ("author", author),
    ] {
        if let Some(value) = value {
            entry.insert(key.into(), Value::from(value));
        }
    }
    if empty_layer {
        entry.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(entry)
}
