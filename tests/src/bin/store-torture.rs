//! A worker process for the store's crash and concurrency tests (spawned by
//! `tests/tests/cross/store_crash.rs`, never run by hand).
//!
//! - `store-torture write ROOT SEED`: writes blobs and rewrites a self-checking document in
//!   a loop, printing `committed <digest>` after each blob commit and `document <seq>`
//!   after each document write, until killed.
//! - `store-torture cas ROOT ID ROUNDS`: appends `ID.ROUND` lines to the document `counter`
//!   by compare-and-swap, ROUNDS times.
//! - `store-torture tag ROOT ID COUNT`: tags an image COUNT times (`ID-0`, `ID-1`...) in the
//!   OCI layout at ROOT (created if missing).
//! - `store-torture stream ROOT MIB`: streams a MIB-mebibyte blob in and back out, verifying
//!   it, and prints `vmhwm_kib <peak resident set size>`; `stream-s3 ENDPOINT BUCKET MIB`
//!   does the same on an S3 server (moto's test credentials).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use bytes::Bytes;
use ocikit_digest::Digest;
use ocikit_store::{DocumentKey, FsStore, Precondition, Store, StoreExt};
use tokio::io::AsyncWriteExt;

/// The self-checking document format: a body followed by `sum=<sha256 of the body>`.
fn sealed(body: &str) -> Bytes {
    Bytes::from(format!("{body}sum={}\n", Digest::sha256(body.as_bytes())))
}

async fn write_loop(root: &str, seed: u64) -> ocikit_store::Result<()> {
    let mut rng = ocikit_testkit::prng::Prng::new(seed);
    let store = FsStore::open(root).await?;
    let key = DocumentKey::new("journal")?;
    let chunk: Vec<u8> = (0..65_536u32).map(|i| (i * 7) as u8).collect();
    let mut stdout = std::io::stdout();
    for n in 0u64.. {
        let size = rng.below(512 << 10) as usize;
        let salt = rng.next_u64().to_le_bytes();
        let mut writer = store.writer().await?;
        writer
            .write_all(&salt)
            .await
            .map_err(ocikit_store::Error::Stream)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            writer
                .write_all(&chunk[..n])
                .await
                .map_err(ocikit_store::Error::Stream)?;
            left -= n;
        }
        let (digest, _) = writer.finish().await?;
        writeln!(stdout, "committed {digest}").ok();
        stdout.flush().ok();
        let body = format!(
            "seq={n}\nlast={digest}\n{}\n",
            "x".repeat((n % 4096) as usize)
        );
        store
            .write_document(&key, sealed(&body), Precondition::None)
            .await?;
        writeln!(stdout, "document {n}").ok();
        stdout.flush().ok();
    }
    Ok(())
}

async fn cas_loop(root: &str, id: &str, rounds: u32) -> ocikit_store::Result<()> {
    let store = FsStore::open(root).await?;
    let key = DocumentKey::new("counter")?;
    for round in 0..rounds {
        store
            .update_document(&key, |old| {
                let mut text = old
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                text.push_str(&format!("{id}.{round}\n"));
                Ok(Some(Bytes::from(text)))
            })
            .await?;
    }
    Ok(())
}

async fn tag_loop(root: &str, id: &str, count: u32) -> Result<(), ocikit_layout::Error> {
    let layout = ocikit_layout::Layout::create(FsStore::open(root).await?).await?;
    let descriptor = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await?;
    for i in 0..count {
        layout.set_tag(&format!("{id}-{i}"), &descriptor).await?;
    }
    Ok(())
}

async fn stream(store: &dyn Store, mib: u64) -> ocikit_store::Result<()> {
    use futures::StreamExt;
    let mut chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 13) as u8).collect();
    let mut expected = ocikit_digest::Hasher::sha256();
    let mut writer = store.writer().await?;
    for i in 0..mib {
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        expected.update(&chunk);
        writer
            .write_all(&chunk)
            .await
            .map_err(ocikit_store::Error::Stream)?;
    }
    let digest = expected.finish();
    writer.commit(&digest, mib << 20).await?;
    let mut check = ocikit_digest::Hasher::sha256();
    let mut stream = store.open(&digest, None).await?.into_stream();
    while let Some(bytes) = stream.next().await {
        check.update(&bytes?);
    }
    if check.finish() != digest {
        return Err(ocikit_store::Error::NotFound { digest });
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("0");
    println!("vmhwm_kib {hwm}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("store-torture: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
            ["write", root, seed] => write_loop(root, seed.parse().unwrap_or(1)).await,
            ["cas", root, id, rounds] => cas_loop(root, id, rounds.parse().unwrap_or(1)).await,
            ["stream", root, mib] => match FsStore::open(root).await {
                Ok(store) => stream(&store, mib.parse().unwrap_or(1)).await,
                Err(e) => Err(e),
            },
            ["stream-s3", endpoint, bucket, mib] => {
                let config = ocikit_store::s3::S3Config::new(bucket)
                    .with_endpoint(endpoint)
                    .with_credentials(ocikit_testkit::moto::ACCESS_KEY, ocikit_testkit::moto::SECRET_KEY)
                    .with_allow_http(true)
                    .with_prefix("stream");
                match ocikit_store::S3Store::new(config) {
                    Ok(store) => stream(&store, mib.parse().unwrap_or(1)).await,
                    Err(e) => Err(e),
                }
            }
            ["tag", root, id, count] => tag_loop(root, id, count.parse().unwrap_or(1))
                .await
                .map_err(|e| ocikit_store::Error::Stream(std::io::Error::other(e))),
            _ => {
                eprintln!(
                    "usage: store-torture write ROOT SEED | cas ROOT ID ROUNDS | stream ROOT MIB | stream-s3 ENDPOINT BUCKET MIB | tag ROOT ID COUNT"
                );
                std::process::exit(2);
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-torture: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
