//! `cargo xtask bench`: runs the comparative benchmarks and rewrites their section of
//! `docs/benchmarks.md` (between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`),
//! then redraws the section's charts (`docs/bench/*.svg`, linked from the section) from the
//! table it just wrote. `cargo xtask bench charts` redraws every chart from the tables as
//! they are, running no benchmark.

use std::process::Command;

use crate::{Result, cargo, root};

pub(crate) fn run(args: &[String]) -> Result {
    if args.iter().any(|a| a == "charts") {
        if args.len() > 1 {
            return Err("`bench charts` takes no other argument".into());
        }
        return charts::redraw_all();
    }
    let which: Vec<&str> = if args.is_empty() {
        vec![
            "digest",
            "store",
            "codec",
            "layout",
            "registry",
            "client",
            "recompress",
            "hostile",
            "memory",
        ]
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in which {
        match name {
            "digest" => digest()?,
            "store" => store()?,
            "codec" => codec()?,
            "layout" => layout()?,
            "registry" => registry()?,
            "client" => client()?,
            "recompress" => recompress()?,
            "hostile" => hostile()?,
            "memory" => memory()?,
            other => {
                return Err(format!(
                    "unknown benchmark `{other}` (have: digest, store, codec, layout, registry, client, recompress, hostile, memory)"
                ));
            }
        }
    }
    Ok(())
}

mod charts;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One line of a bench's output: `BENCH name median unit min max`, and one row of a table.
#[derive(Debug, PartialEq)]
struct Line {
    name: String,
    median: f64,
    unit: String,
    min: f64,
    max: f64,
}

fn bench_lines(output: &str) -> Vec<Line> {
    output
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("BENCH ")?.split_whitespace();
            let name = parts.next()?.to_string();
            let median = parts.next()?.parse().ok()?;
            let unit = parts.next()?.to_string();
            let min = parts.next()?.parse().ok()?;
            let max = parts.next()?.parse().ok()?;
            Some(Line {
                name,
                median,
                unit,
                min,
                max,
            })
        })
        .collect()
}

/// Runs `cargo bench -p PACKAGE --bench BENCH` and parses its lines.
fn cargo_bench(package: &str, bench: &str) -> Result<Vec<Line>> {
    cargo_bench_with(package, bench, &[])
}

/// [`cargo_bench`] with environment variables for the bench.
fn cargo_bench_with(package: &str, bench: &str, env: &[(&str, String)]) -> Result<Vec<Line>> {
    let mut cmd = cargo();
    cmd.args(["bench", "-q", "-p", package, "--bench", bench]);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo bench failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bench_lines(&String::from_utf8_lossy(&out.stdout)))
}

fn table(lines: &[Line]) -> String {
    let mut table =
        String::from("| case | median | unit | min | max |\n|---|---:|---|---:|---:|\n");
    for l in lines {
        table.push_str(&format!(
            "| {} | {:.2} | {} | {:.2} | {:.2} |\n",
            l.name, l.median, l.unit, l.min, l.max
        ));
    }
    table
}

fn median_of(lines: &[Line], name: &str) -> f64 {
    lines
        .iter()
        .find(|l| l.name == name)
        .map_or(0.0, |l| l.median)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = output_of(Command::new("date").args(["-u", "+%Y-%m-%d"])).unwrap_or_default();
    let rustc = output_of(Command::new("rustc").arg("--version")).unwrap_or_default();
    format!(
        "{cpu}, {cores} cores; {rustc}; measured {date}",
        date = date.trim(),
        rustc = rustc.trim()
    )
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openssl speed -evp sha256` on 1 MiB blocks, in GB/s (median of three runs).
fn openssl_sha256() -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let out = output_of(Command::new("openssl").args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2",
        ]))
        .ok_or("openssl speed failed (is openssl installed?)")?;
        // The last line reads `sha256   1914699.78k` (thousands of bytes per second).
        let last = out.lines().last().unwrap_or_default();
        let kbytes = last
            .split_whitespace()
            .last()
            .and_then(|s| s.trim_end_matches('k').parse::<f64>().ok())
            .ok_or_else(|| format!("cannot read openssl's output: {last:?}"))?;
        rates.push(kbytes * 1000.0 / 1e9);
    }
    Ok(median(rates))
}

fn digest() -> Result {
    let mut lines = cargo_bench("ocikit-digest", "hashing")?;
    let openssl = openssl_sha256()?;
    lines.push(Line {
        name: "sha256/openssl-speed-evp-1MiB-blocks".into(),
        median: openssl,
        unit: "GB/s".into(),
        min: openssl,
        max: openssl,
    });
    let ours = median_of(&lines, "sha256/ocikit-hasher");
    let fastest = openssl
        .max(median_of(&lines, "sha256/sha2-raw"))
        .max(median_of(&lines, "sha256/ring-raw"));
    let ratio = ours / fastest;
    let section = format!(
        "Machine: {machine}.\n\
         256 MiB hashed in 1 MiB chunks from one reused buffer; median of several runs after a warm-up \
         (openssl: median of three `openssl speed -evp sha256 -bytes 1048576` runs).\n\n\
         {table}\n\
         ocikit SHA-256 / fastest single-core SHA-256 here = **{pct:.0}%** (goal ≥ 95%: {verdict}).\n",
        machine = machine(),
        table = table(&lines),
        pct = ratio * 100.0,
        verdict = if ratio >= 0.95 { "met" } else { "NOT met" },
    );
    println!("{section}");
    write_section("digest", &section)
}

fn store() -> Result {
    let lines = cargo_bench("ocikit-store", "ingest")?;
    let ratio = median_of(&lines, "ratio/ingest-vs-slower-limit");
    let hwm_before = median_of(&lines, "memory/vmhwm-before-ingest");
    let hwm_during = median_of(&lines, "memory/vmhwm-during-ingest");
    let section = format!(
        "Machine: {machine}.\n\
         1 GiB from a page-cached file into the filesystem store (hash + write + fsync + rename), against \
         the same work as separate coreutils passes and against the raw limits, run interleaved \
         (limit, coreutils, ocikit; repeated) so the disk's drift hits all alike. \
         Ratios are taken within each round.\n\n\
         {table}\n\
         Ingest / slower limit (per round: min of that round's durable write and SHA-256; median of the ratios) = **{pct:.0}%** \
         (goal: within 10% of the slower limit, i.e. ≥ 90%: {verdict}).\n\
         Memory high-water mark while streaming 1 GiB: {hwm_during:.0} MiB (process baseline {hwm_before:.0} MiB; no goal, reported).\n",
        machine = machine(),
        table = table(&lines),
        pct = ratio * 100.0,
        verdict = if ratio >= 0.9 { "met" } else { "NOT met" },
    );
    println!("{section}");
    write_section("store", &section)
}

/// Builds a benchmark peer (a separate workspace under `xtask/peers/`, so that its
/// dependencies never reach ocikit's graph) in release mode and returns its binary.
pub(crate) fn peer(name: &str) -> Result<std::path::PathBuf> {
    let manifest = root().join("xtask/peers").join(name).join("Cargo.toml");
    let target = root().join("target/peers");
    crate::run(
        cargo()
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target),
    )?;
    Ok(target.join("release").join(format!("{name}-peer")))
}

fn line<'a>(lines: &'a [Line], name: &str) -> Option<&'a Line> {
    lines.iter().find(|l| l.name == name)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Layer writing against ocidir 0.8 on the same ~500 MiB tree, and layer application
/// against GNU tar on tmpfs.
fn codec() -> Result {
    let ocidir = peer("ocidir")?;
    let layer = cargo_bench_with(
        "ocikit-codec",
        "layer",
        &[(
            "OCIKIT_BENCH_COMPARE",
            format!("{} layers", ocidir.display()),
        )],
    )?;
    let gz_speed = median_of(&layer, "gzip6/ocikit-vs-ocidir-speed-tree");
    let gz_size = median_of(&layer, "gzip6/ocikit-vs-ocidir-size");
    let zstd_speed = median_of(&layer, "zstd3/ocikit-vs-ocidir-speed-tree");
    if line(&layer, "gzip6/ocikit-vs-ocidir-speed-tree").is_none() {
        return Err("the layer bench printed no ocidir comparison".into());
    }
    let section = format!(
        "Machine: {machine}.\n\
         A deterministic ~500 MiB tree (source-like text, binaries, a log, an incompressible \
         asset, a database-like file, symlinks) packed into a layer: ocikit's `LayerWriter` (parallel gzip \
         on zlib-rs, zstd worker threads; digest and diffID in one pass) against ocidir 0.8's \
         `create_gzip_layer` and `create_layer_zstd_multithread` (its own process, built by \
         `xtask/peers/ocidir`), both fed by the `tar` crate's builder from the tree (`-tree`) and from an \
         in-memory tar (`-mem`); cases interleaved run by run; MB/s of uncompressed tar.\n\n\
         {table}\n\
         gzip level 6 from the tree: ocikit / ocidir = **{gz_speed:.2}x** (goal ≥ 3.5x: {v1}); \
         compressed size ocikit / ocidir = **{gz_size:.3}** (goal within 2%: {v2}).\n\
         zstd level 3 from the tree: ocikit / ocidir = **{zstd_speed:.2}x** (goal ≥ 1.1x: {v3}).\n",
        machine = machine(),
        table = table(&layer),
        v1 = verdict(gz_speed >= 3.5),
        v2 = verdict((gz_size - 1.0).abs() <= 0.02),
        v3 = verdict(zstd_speed >= 1.1),
    );
    println!("{section}");
    write_section("codec-layer", &section)?;

    let apply = cargo_bench("ocikit-codec", "apply")?;
    let gz = median_of(&apply, "gz/speedup-vs-gnu-tar");
    let section = format!(
        "Machine: {machine}.\n\
         The same kind of ~500 MiB tree, packed by GNU tar (`tar -czf`, gzip -6), extracted into a fresh \
         directory on tmpfs (`/dev/shm`): GNU `tar -xzf` (gzip in a second process) against ocikit \
         (flate2 on zlib-rs decompressing on a second thread into `apply_layer`, diffID included); \
         the plain tar likewise; the raw limits for reference. Cases interleaved; medians.\n\n\
         {table}\n\
         Apply a gzip layer into tmpfs: ocikit is **{gz:.2}x** as fast as GNU `tar -xzf` (goal ≥ 2x: {v}).\n\
         Apply a plain tar layer: ocikit is **{plain:.2}x** as fast as GNU `tar -xf` (no goal; reported).\n",
        plain = median_of(&apply, "plain/speedup-vs-gnu-tar"),
        machine = machine(),
        table = table(&apply),
        v = verdict(gz >= 2.0),
    );
    println!("{section}");
    write_section("codec-apply", &section)
}

/// fsck, referrers and tags against ocidir 0.8, on tmpfs.
fn layout() -> Result {
    let ocidir = peer("ocidir")?;
    let lines = cargo_bench_with(
        "ocikit-layout",
        "layout",
        &[("OCIKIT_BENCH_PEER", ocidir.display().to_string())],
    )?;
    let fsck = median_of(&lines, "fsck-large/ocikit-vs-ocidir");
    let fsck_small = median_of(&lines, "fsck-small/ocikit-vs-ocidir");
    let referrers = median_of(&lines, "referrers/ocikit-vs-ocidir");
    let set_tag = median_of(&lines, "tags-10000/set") / 1000.0;
    let resolve = median_of(&lines, "tags-10000/resolve");
    if line(&lines, "fsck-large/ocikit-vs-ocidir").is_none() {
        return Err("the layout bench printed no ocidir comparison".into());
    }
    let section = format!(
        "Machine: {machine}.\n\
         Layouts on tmpfs (`/dev/shm`), written by ocikit's `Layout`; ocidir 0.8 runs as its own \
         process (`xtask/peers/ocidir`), alternating with ocikit round by round. fsck: a ~1 GiB \
         layout of 120 images × 4 random layers (64 KiB - 4 MiB), and 2,000 images × 2 layers of \
         4-16 KiB (8,000 blobs); ocikit hashes every blob on both cores, ocidir's `fsck` on one. \
         Referrers: one subject among 10,000 artifact manifests in `index.json`; ocikit reads its \
         persisted referrers index (in sync), ocidir's `find_referrers` reads every manifest. \
         Tags: per-operation cost of `resolve` and `set_tag` (a compare-and-swap of `index.json`) \
         at 100, 1,000, 10,000 and 100,000 tags.\n\n\
         {table}\n\
         fsck of the ~1 GiB layout: ocikit / ocidir = **{fsck:.2}x** (goal ≥ 1.7x: {v1}); \
         of 8,000 small blobs: **{fsck_small:.2}x** (issue 21's goal ≥ 1.7x: {v3}).\n\
         Referrers of one subject among 10,000 manifests: ocikit is **{referrers:.0}x** as fast \
         as ocidir's `find_referrers` (goal ≥ 100x: {v2}).\n\
         `set_tag` among 10,000 tags: **{set_tag:.2} ms** (issue 21's goal ≤ 2 ms: {v4}); \
         `resolve` with `index.json` unchanged: {resolve:.0} µs at 10,000 tags.\n",
        machine = machine(),
        table = table(&lines),
        v1 = verdict(fsck >= 1.7),
        v2 = verdict(referrers >= 100.0),
        v3 = verdict(fsck_small >= 1.7),
        v4 = verdict(set_tag <= 2.0),
    );
    println!("{section}");
    write_section("layout", &section)
}

fn registry() -> Result {
    crate::ensure_apt_tools(&[("docker-registry", "docker-registry"), ("wrk", "wrk")])?;
    crate::run(cargo().args(["build", "--release", "-q", "-p", "ocikit-cli"]))?;
    let server = root().join("target/release/ocikit");
    let lines = cargo_bench_with(
        "ocikit-registry",
        "registry",
        &[("OCIKIT_BENCH_SERVER", server.display().to_string())],
    )?;
    if line(&lines, "push-monolithic/ocikit-vs-distribution").is_none() {
        return Err("the registry bench printed no distribution comparison".into());
    }
    let push = median_of(&lines, "push-monolithic/ocikit-vs-distribution");
    let chunked = median_of(&lines, "push-chunked/ocikit-vs-distribution");
    let pull = median_of(&lines, "pull/ocikit-vs-distribution");
    let get = median_of(&lines, "manifest-get/ocikit-vs-distribution");
    let rss = median_of(&lines, "peak-rss/ocikit");
    let p99 = median_of(&lines, "manifest-get-p99/ocikit");
    let p99_d = median_of(&lines, "manifest-get-p99/distribution");
    let section = format!(
        "Machine: {machine}.\n\
         Both servers as their own processes on loopback, filesystem storage on tmpfs \
         (`/dev/shm`): Debian's `docker-registry` 2.8.2 (in-memory blob-descriptor cache, access \
         log off) against `ocikit serve --log off` (release build), alternating round by round; \
         the client is reqwest on one thread. Push: a fresh 500 MiB blob each time, POST + PUT \
         and POST + 8 MiB PATCHes with `Content-Range` + PUT. Pull: GET of the same blob, bytes \
         counted. Manifest GET by tag: `wrk -t2 -c8 -d10s` with the OCI Accept header. Peak \
         RSS: the server's VmHWM over the whole run.\n\n\
         {table}\n\
         Push of a 500 MiB blob: ocikit / distribution = **{push:.2}x** monolithic, \
         **{chunked:.2}x** chunked (goal ≥ 2x: {v1}); ocikit's peak RSS **{rss:.0} MiB** (goal \
         ≤ 64 MiB: {v2}).\n\
         Pull of the same blob: **{pull:.2}x** (goal ≥ 1x: {v3}).\n\
         Manifest GET by tag under wrk: **{get:.2}x** distribution's requests/s (goal ≥ 1x: \
         {v4}); p99 {p99:.2} ms (distribution {p99_d:.2} ms).\n",
        machine = machine(),
        table = table(&lines),
        v1 = verdict(push >= 2.0 && chunked >= 2.0),
        v2 = verdict(rss <= 64.0),
        v3 = verdict(pull >= 1.0),
        v4 = verdict(get >= 1.0),
    );
    println!("{section}");
    write_section("registry", &section)
}

/// Issue 22's hostile-load test run as a benchmark (crates/ocikit-cli/benches/hostile.rs):
/// each attack alone against `ocikit serve` and distribution 2.8.2 while an honest client
/// pushes and pulls; the bench prints its own table (one row per attack and server, not
/// medians), written here with the conditions. `OCIKIT_BENCH_HOSTILE_SCALE` and
/// `OCIKIT_BENCH_HOSTILE_SECS` pass through to scale it down.
fn hostile() -> Result {
    crate::ensure_apt_tools(&[("docker-registry", "docker-registry")])?;
    // Its progress (a line per phase, ten phases of up to a minute) shows as it runs.
    let run = table_bench("hostile")?;
    let section = format!(
        "Machine: {machine}; commit {commit}; load average {before} before, {after} after \
         ({scale}).\n\n\
         {rows}",
        machine = machine(),
        commit = run.commit,
        before = run.field("LOAD before:"),
        after = run.field("LOAD after:"),
        scale = run.field("SCALE:"),
        rows = run.rows,
    );
    println!("{section}");
    write_section_only("hostile", &section).map(drop)
}

/// Issue 21's memory goal (crates/ocikit-cli/benches/memory.rs): the peak RSS (VmHWM) of
/// build, copy, push, pull, unpack and serve on generated inputs (100 MiB and 2 GiB;
/// `OCIKIT_BENCH_MEMORY_SIZES` passes through); the bench prints its own table, written here
/// with the conditions.
fn memory() -> Result {
    let run = table_bench("memory")?;
    let section = format!(
        "Machine: {machine}; commit {commit}; load average {before} before, {after} after.\n\n\
         {rows}",
        machine = machine(),
        commit = run.commit,
        before = run.field("LOAD before:"),
        after = run.field("LOAD after:"),
        rows = run.rows,
    );
    println!("{section}");
    write_section_only("memory", &section).map(drop)
}

/// What a bench of `ocikit-cli` that prints its own table printed: its output, the table's
/// rows, and the commit it ran on.
struct TableRun {
    stdout: String,
    rows: String,
    commit: String,
}

impl TableRun {
    /// The rest of the first line that starts with `prefix` (`?` when there is none).
    fn field(&self, prefix: &str) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or("?")
            .trim()
            .to_owned()
    }
}

/// Runs `cargo bench -p ocikit-cli --bench NAME` (its stderr shown as it runs) and takes the
/// table it prints.
fn table_bench(name: &str) -> Result<TableRun> {
    let mut cmd = cargo();
    cmd.args(["bench", "-q", "-p", "ocikit-cli", "--bench", name]);
    cmd.stderr(std::process::Stdio::inherit());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo bench -p ocikit-cli --bench {name} failed (its stderr is above)"
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: String = stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    if rows.lines().count() < 3 {
        return Err(format!("the {name} bench printed no table"));
    }
    let commit =
        output_of(Command::new("git").args(["rev-parse", "--short", "HEAD"])).unwrap_or_default();
    Ok(TableRun {
        stdout,
        rows,
        commit: commit.trim().to_owned(),
    })
}

/// Runs `cmd` and returns its wall time in seconds, failing on a non-zero exit.
fn timed(cmd: &mut Command) -> Result<f64> {
    let started = std::time::Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn wait_for_port(port: u16) -> Result {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!("nothing listens on 127.0.0.1:{port}"))
}

/// Pull and push of a ~500 MiB five-layer image through real registries: ocikit's client
/// against skopeo and against the limit (the same blobs fetched by parallel `curl`s), from
/// distribution 2.8 into a layout, and from a layout into ocikit's server.
fn client() -> Result {
    crate::ensure_apt_tools(&[
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("curl", "curl"),
    ])?;
    crate::run(cargo().args(["build", "--release", "-q", "-p", "ocikit-cli"]))?;
    let ocikit = root().join("target/release/ocikit");
    let dir = std::path::PathBuf::from(format!(
        "/dev/shm/ocikit-bench-client-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = client_in(&dir, &ocikit);
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// What a pull of a one-image layout's image fetches: the manifest's media type, and the
/// digests of its config and layers.
fn image_blobs(layout: &std::path::Path) -> Result<(String, Vec<String>)> {
    let json = |path: std::path::PathBuf| -> Result<serde_json::Value> {
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let index = json(layout.join("index.json"))?;
    let root = &index["manifests"][0];
    let (Some(media_type), Some(digest)) = (root["mediaType"].as_str(), root["digest"].as_str())
    else {
        return Err(format!("{}: no manifest in index.json", layout.display()));
    };
    let manifest = json(layout.join("blobs").join(digest.replace(':', "/")))?;
    let mut blobs = Vec::new();
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for descriptor in std::iter::once(&manifest["config"]).chain(&layers) {
        let digest = descriptor["digest"]
            .as_str()
            .ok_or_else(|| format!("{digest}: a descriptor without a digest"))?;
        blobs.push(digest.to_owned());
    }
    Ok((media_type.to_owned(), blobs))
}

/// The limit of a pull from `base` (`http://HOST:PORT/v2/REPO`): one `curl` for the
/// manifest by `tag`, then one `curl` per blob, all started at once, each writing a file
/// into a fresh `into`. Returns the seconds the whole took, after checking that the files
/// hold `bytes` bytes in all.
fn curl_limit(
    base: &str,
    tag: &str,
    (media_type, blobs): (&str, &[String]),
    into: &std::path::Path,
    bytes: u64,
) -> Result<f64> {
    std::fs::remove_dir_all(into).ok();
    std::fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
    let started = std::time::Instant::now();
    let mut manifest = Command::new("curl");
    manifest
        .args(["-s", "-f", "-H", &format!("Accept: {media_type}"), "-o"])
        .arg(into.join("manifest"))
        .arg(format!("{base}/manifests/{tag}"));
    let status = manifest
        .status()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !status.success() {
        return Err(format!("{manifest:?} failed: {status}"));
    }
    let mut curls = Vec::new();
    for digest in blobs {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-f", "-o"])
            .arg(into.join(digest.replace(':', "-")))
            .arg(format!("{base}/blobs/{digest}"));
        let child = curl.spawn().map_err(|e| format!("cannot run curl: {e}"))?;
        curls.push((curl, Child(child)));
    }
    for (curl, mut child) in curls {
        let status = child.0.wait().map_err(|e| format!("{curl:?}: {e}"))?;
        if !status.success() {
            return Err(format!("{curl:?} failed: {status}"));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let fetched: u64 = std::fs::read_dir(into)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(into).ok();
    if fetched != bytes {
        return Err(format!(
            "the curls fetched {fetched} bytes, the image has {bytes}"
        ));
    }
    Ok(seconds)
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn client_in(dir: &std::path::Path, ocikit: &std::path::Path) -> Result {
    let runs = 5;
    // Five layers of 100 MiB of xorshift bytes (incompressible, as most layer bytes are),
    // uncompressed: a pull moves and verifies bytes, it never decompresses.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut layers = Vec::new();
    for i in 0..5 {
        let layer = dir.join(format!("layer{i}"));
        std::fs::create_dir_all(&layer).map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(100 << 20);
        while bytes.len() < 100 << 20 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            bytes.extend_from_slice(&state.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        }
        std::fs::write(layer.join("data.bin"), &bytes).map_err(|e| e.to_string())?;
        layers.push(layer);
    }
    let source = dir.join("source");
    let mut build = Command::new(ocikit);
    build
        .args(["-q", "build", "--compression", "none", "--tag"])
        .arg(format!("oci:{}:v1", source.display()))
        .args(&layers);
    timed(&mut build)?;
    let image_bytes: u64 = std::fs::read_dir(source.join("blobs/sha256"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mb = image_bytes as f64 / 1e6;
    let (media_type, blobs) = image_blobs(&source)?;

    let dist_port = free_port()?;
    let config = dir.join("distribution.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{dist_port}\n",
            dir.join("distribution").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let _distribution = Child(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start docker-registry: {e}"))?,
    );
    wait_for_port(dist_port)?;
    let remote = format!("docker://127.0.0.1:{dist_port}/bench/app:v1");
    let src = format!("oci:{}:v1", source.display());
    timed(Command::new(ocikit).args(["-q", "copy", "--dest-tls-verify=false", &src, &remote]))?;

    let load_before = load_average();
    let base = format!("http://127.0.0.1:{dist_port}/v2/bench/app");
    let pulled = dir.join("pulled");
    let into = format!("oci:{}:v1", pulled.display());
    let mut seconds: [Vec<f64>; 3] = Default::default();
    let mut push_skopeo = Vec::new();
    let mut push_ocikit = Vec::new();
    for round in 0..runs {
        // The three pulls in rotating order: the limit, skopeo, ocikit; then skopeo,
        // ocikit, the limit; and so on.
        for k in 0..3 {
            let which = (round + k) % 3;
            let t = match which {
                0 => curl_limit(
                    &base,
                    "v1",
                    (&media_type, &blobs),
                    &dir.join("curl"),
                    image_bytes,
                )?,
                1 => {
                    std::fs::remove_dir_all(&pulled).ok();
                    timed(Command::new("skopeo").args([
                        "--insecure-policy",
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        &remote,
                        &into,
                    ]))?
                }
                _ => {
                    std::fs::remove_dir_all(&pulled).ok();
                    timed(Command::new(ocikit).args([
                        "-q",
                        "copy",
                        "--src-tls-verify=false",
                        &remote,
                        &into,
                    ]))?
                }
            };
            seconds[which].push(t);
        }
        std::fs::remove_dir_all(&pulled).ok();
        // Pushes into ocikit's server, each into a server of its own: skopeo remembers which
        // registries hold which blobs and would mount them instead of sending them again.
        let push_into = |name: &str, tool: &mut Command| -> Result<f64> {
            let port = free_port()?;
            let _server = Child(
                Command::new(ocikit)
                    .args(["-q", "serve", "--log", "off", "--addr"])
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--root")
                    .arg(dir.join(format!("serve-{name}-{round}")))
                    .spawn()
                    .map_err(|e| format!("cannot start ocikit serve: {e}"))?,
            );
            wait_for_port(port)?;
            let t = timed(tool.arg(format!("docker://127.0.0.1:{port}/{name}/app:v1")))?;
            std::fs::remove_dir_all(dir.join(format!("serve-{name}-{round}"))).ok();
            Ok(mb / t)
        };
        let skopeo_push = || {
            push_into(
                "skopeo",
                Command::new("skopeo").args([
                    "--insecure-policy",
                    "copy",
                    "-q",
                    "--dest-tls-verify=false",
                    &src,
                ]),
            )
        };
        let ocikit_push = || {
            push_into(
                "ocikit",
                Command::new(ocikit).args(["-q", "copy", "--dest-tls-verify=false", &src]),
            )
        };
        if round.is_multiple_of(2) {
            push_skopeo.push(skopeo_push()?);
            push_ocikit.push(ocikit_push()?);
        } else {
            push_ocikit.push(ocikit_push()?);
            push_skopeo.push(skopeo_push()?);
        }
        eprintln!(
            "client bench: round {round}: curls {:.3} s, skopeo {:.3} s, ocikit {:.3} s",
            seconds[0][round], seconds[1][round], seconds[2][round]
        );
    }
    let load_after = load_average();
    let [limit_s, skopeo_s, ocikit_s] = &seconds;
    let rate = |s: &[f64]| s.iter().map(|t| mb / t).collect::<Vec<_>>();
    // Ratios per round (the three pulls of a round ran back to back, under the same load),
    // then their median.
    let per_round =
        |theirs: &[f64]| -> Vec<f64> { theirs.iter().zip(ocikit_s).map(|(t, o)| t / o).collect() };
    let vs_limit = per_round(limit_s);
    let vs_skopeo = per_round(skopeo_s);
    let push: Vec<f64> = push_ocikit
        .iter()
        .zip(&push_skopeo)
        .map(|(o, s)| o / s)
        .collect();
    let lines = vec![
        summary("image-size", "MB", &[mb]),
        summary("pull-from-distribution/curl-limit", "MB/s", &rate(limit_s)),
        summary("pull-from-distribution/skopeo", "MB/s", &rate(skopeo_s)),
        summary("pull-from-distribution/ocikit", "MB/s", &rate(ocikit_s)),
        summary("pull-from-distribution/ocikit-vs-limit", "x", &vs_limit),
        summary("pull-from-distribution/ocikit-vs-skopeo", "x", &vs_skopeo),
        summary("push-to-ocikit-serve/skopeo", "MB/s", &push_skopeo),
        summary("push-to-ocikit-serve/ocikit", "MB/s", &push_ocikit),
        summary("push-to-ocikit-serve/ocikit-vs-skopeo", "x", &push),
    ];
    let (limit, pull, push) = (median(vs_limit), median(vs_skopeo), median(push));
    let secs = |s: &[f64]| {
        let mut s = s.to_vec();
        s.sort_by(f64::total_cmp);
        format!(
            "{:.2} s (median; {:.2}–{:.2})",
            median(s.clone()),
            s[0],
            s[s.len() - 1]
        )
    };
    let section = format!(
        "Machine: {machine}.\n\
         A five-layer image of {mb:.0} MB (100 MiB of incompressible bytes a layer, uncompressed \
         tar) in a layout on tmpfs. Pull: from Debian's `docker-registry` 2.8.2 on loopback \
         (filesystem storage on tmpfs) into a fresh layout on tmpfs, `skopeo copy \
         docker://… oci:…` against `ocikit copy docker://… oci:…` (release build), and the \
         limit, the rate at which the same registry serves the same bytes to `curl`: one `curl` \
         for the manifest by tag, then one per blob (the config and the five layers), all \
         started at once, each writing a file on tmpfs; the whole timed. The three in rotating \
         order, each into a fresh directory. Push: the same image from the layout into \
         `ocikit serve`, each push into a fresh server (skopeo would otherwise mount blobs it \
         remembers instead of sending them), alternating which goes first. Whole commands \
         timed, {runs} rounds; rates are medians, ratios the median of the rounds' ratios. \
         Load average (1, 5, 15 min) {load_before} before, {load_after} after.\n\n\
         {table}\n\
         Pull, seconds: curls {limit_t}, ocikit {ocikit_t}, skopeo {skopeo_t}.\n\n\
         Pull from distribution into a layout: ocikit / limit = **{limit:.2}x** (goal ≥ 0.80x: \
         {v1}); ocikit / skopeo = **{pull:.2}x** (reported beside it).\n\
         Push into ocikit's server: ocikit / skopeo = **{push:.2}x** (no goal; reported).\n",
        machine = machine(),
        table = table(&lines),
        limit_t = secs(limit_s),
        ocikit_t = secs(ocikit_s),
        skopeo_t = secs(skopeo_s),
        v1 = verdict(limit >= 0.80),
    );
    println!("{section}");
    write_section("client", &section)
}

/// Recompression of a gzip image to zstd between two layouts: `ocikit copy --compression
/// zstd` against `skopeo copy --dest-compress-format zstd`.
fn recompress() -> Result {
    crate::ensure_apt_tools(&[("skopeo", "skopeo")])?;
    crate::run(cargo().args(["build", "--release", "-q", "-p", "ocikit-cli"]))?;
    let ocikit = root().join("target/release/ocikit");
    let dir = std::path::PathBuf::from(format!(
        "/dev/shm/ocikit-bench-recompress-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = recompress_in(&dir, &ocikit);
    std::fs::remove_dir_all(&dir).ok();
    result
}

fn recompress_in(dir: &std::path::Path, ocikit: &std::path::Path) -> Result {
    let runs = 3;
    // Three layers of 64 MiB of words drawn from a small vocabulary: text-like content that
    // gzip shrinks about threefold, so both codecs do real work.
    const WORDS: &[&str] = &[
        "layer",
        "image",
        "digest",
        "manifest",
        "index",
        "blob",
        "config",
        "tar",
        "root",
        "usr",
        "lib",
        "bin",
        "etc",
        "share",
        "doc",
        "locale",
        "python3",
        "site-packages",
        "0x1f",
        "42",
        "error",
        "return",
        "static",
        "const",
        "function",
        "=",
        "{",
        "}",
        "\n",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut layers = Vec::new();
    let mut uncompressed = 0u64;
    for i in 0..3 {
        let layer = dir.join(format!("layer{i}"));
        std::fs::create_dir_all(&layer).map_err(|e| e.to_string())?;
        let mut text = String::with_capacity(64 << 20);
        while text.len() < 64 << 20 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let pick = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            text.push_str(WORDS[(pick % WORDS.len() as u64) as usize]);
            text.push(if pick >> 60 == 0 { '\n' } else { ' ' });
        }
        uncompressed += text.len() as u64;
        std::fs::write(layer.join("data.txt"), &text).map_err(|e| e.to_string())?;
        layers.push(layer);
    }
    let source = dir.join("source");
    timed(
        Command::new(ocikit)
            .args(["-q", "build", "--compression", "gzip", "--tag"])
            .arg(format!("oci:{}:v1", source.display()))
            .args(&layers),
    )?;
    let src = format!("oci:{}:v1", source.display());
    let mb = uncompressed as f64 / 1e6;
    let mut with_skopeo = Vec::new();
    let mut with_ocikit = Vec::new();
    for round in 0..runs {
        let into = format!("oci:{}:v1", dir.join("dest").display());
        let (theirs, ours) = copy_both_ways(
            round,
            &dir.join("dest"),
            Command::new("skopeo").args([
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-compress-format",
                "zstd",
                &src,
                &into,
            ]),
            Command::new(ocikit).args(["-q", "copy", "--compression", "zstd", &src, &into]),
        )?;
        with_skopeo.push(mb / theirs);
        with_ocikit.push(mb / ours);
        eprintln!("recompress bench: round {round} done");
    }
    let ratio = median(with_ocikit.clone()) / median(with_skopeo.clone());
    let lines = vec![
        summary("uncompressed-size", "MB", &[mb]),
        summary("gzip-to-zstd/skopeo", "MB/s", &with_skopeo),
        summary("gzip-to-zstd/ocikit", "MB/s", &with_ocikit),
        summary("gzip-to-zstd/ocikit-vs-skopeo", "x", &[ratio]),
    ];
    let section = format!(
        "Machine: {machine}.\n\
         A three-layer image of {mb:.0} MB uncompressed (text-like content, gzip level 6 layers \
         built by ocikit) in a layout on tmpfs, copied into a fresh layout on tmpfs with every \
         layer recompressed to zstd level 3: `skopeo copy --dest-compress-format zstd oci:… \
         oci:…` against `ocikit copy --compression zstd oci:… oci:…` (release build), \
         alternating which goes first. Throughput in uncompressed MB/s; whole commands timed, \
         {runs} runs, medians.\n\n\
         {table}\n\
         Recompressing gzip to zstd: ocikit / skopeo = **{ratio:.2}x** (no goal; reported).\n",
        machine = machine(),
        table = table(&lines),
    );
    println!("{section}");
    write_section("recompress", &section)
}

/// Times `skopeo` and `ocikit` (two commands writing into `dest`), each into a fresh
/// `dest`, skopeo first in even rounds and ocikit first in odd ones; returns their seconds.
fn copy_both_ways(
    round: usize,
    dest: &std::path::Path,
    skopeo: &mut Command,
    ocikit: &mut Command,
) -> Result<(f64, f64)> {
    let timed_fresh = |cmd: &mut Command| {
        std::fs::remove_dir_all(dest).ok();
        timed(cmd)
    };
    if round.is_multiple_of(2) {
        let theirs = timed_fresh(skopeo)?;
        Ok((theirs, timed_fresh(ocikit)?))
    } else {
        let ours = timed_fresh(ocikit)?;
        Ok((timed_fresh(skopeo)?, ours))
    }
}

/// A table row for measurements `v` (at least one): their median, min and max.
fn summary(name: &str, unit: &str, v: &[f64]) -> Line {
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Line {
        name: name.to_owned(),
        median: median(v.to_vec()),
        unit: unit.to_owned(),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    }
}

fn write_section(name: &str, body: &str) -> Result {
    let new = write_section_only(name, &charts::with_links(name, body))?;
    charts::draw_section(&new, name)
}

/// Replaces section `name` of docs/benchmarks.md by `body`, drawing no chart (for tables
/// that are not `case | median | unit | min | max`); returns the whole new text.
fn write_section_only(name: &str, body: &str) -> Result<String> {
    let path = root().join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) else {
        return Err(format!("docs/benchmarks.md has no {start} … {end} markers"));
    };
    let new = format!("{}{start}\n{body}{}", &text[..a], &text[b..]);
    std::fs::write(&path, &new).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(new)
}
