//! `cargo xtask release check | prepare | publish --dry-run`: the release steps that can be
//! checked and prepared from here. Nothing is ever uploaded: `publish` runs only with
//! `--dry-run` and prints the commands a maintainer runs by hand.
//!
//! - `check [--no-verify] [--allow-dirty]`: the manifests of the publishable crates are
//!   complete (description, license, repository, an existing readme, rust-version, every
//!   feature documented by a `## ` comment line directly above it in `[features]`, internal
//!   dependencies with a `version`), then every publishable crate is packaged in dependency
//!   order with `cargo package`, each one built from its `.crate` against the others (cargo's
//!   local-registry overlay makes the not-yet-published workspace crates resolvable). Lists
//!   the crates changed since the last tag.
//! - `prepare <version> [--allow-dirty] [--no-ci]`: bumps the workspace version and every
//!   internal dependency's `version =`, rolls `CHANGELOG.md` (the `[Unreleased]` section
//!   becomes `[<version>] - <date>` under a new empty `[Unreleased]`), refreshes the lock file
//!   (`cargo update --workspace`, offline when it can) and runs `xtask ci`. The version must
//!   be greater than the current one, or equal to it while that was never released (no tag
//!   `v<version>`, no changelog section): the first release of the version the manifests
//!   already carry.
//! - `publish --dry-run [--no-verify] [--allow-dirty]`: walks the crates in dependency order,
//!   skips those whose version is already in the crates.io index, reports a name taken by
//!   another project, dry-runs `cargo publish` for the rest, and prints the tag command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use semver::Version;
use toml_edit::{DocumentMut, Item, Value};

use crate::Result;
use crate::metadata::{Kind, Package, Workspace};

const USAGE: &str = "usage: cargo xtask release check [--no-verify] [--allow-dirty]
       cargo xtask release prepare <version> [--allow-dirty] [--no-ci]
       cargo xtask release publish --dry-run [--no-verify] [--allow-dirty]";

/// The sparse index of crates.io.
const INDEX: &str = "https://index.crates.io";

/// Runs `cargo xtask release ...`.
pub(crate) fn run(args: &[String]) -> Result {
    let flag = |name: &str| args.iter().any(|a| a == name);
    let root = crate::root();
    let known: &[&str] = match args.first().map(String::as_str) {
        Some("check") => &["--no-verify", "--allow-dirty"],
        Some("prepare") => &["--allow-dirty", "--no-ci"],
        Some("publish") => &["--dry-run", "--no-verify", "--allow-dirty"],
        _ => &[],
    };
    if let Some(unknown) = args
        .iter()
        .skip(1)
        .find(|a| a.starts_with('-') && !known.contains(&a.as_str()))
    {
        return Err(format!("unknown option {unknown}\n{USAGE}"));
    }
    match args.first().map(String::as_str) {
        Some("check") => check(&root, flag("--no-verify"), flag("--allow-dirty")),
        Some("prepare") => {
            let version = args
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .ok_or_else(|| format!("prepare needs a version\n{USAGE}"))?;
            prepare(&root, version, flag("--allow-dirty"), flag("--no-ci"))
        }
        Some("publish") => {
            if !flag("--dry-run") {
                return Err(
                    "`release publish` runs only with --dry-run: nothing is published \
                     from xtask. After a dry run succeeds, publish by hand from a clean \
                     checkout of the release commit with `cargo publish --workspace`, then \
                     push the tag it prints"
                        .into(),
                );
            }
            publish_dry_run(&root, flag("--no-verify"), flag("--allow-dirty"))
        }
        _ => Err(format!("unknown or missing release command\n{USAGE}")),
    }
}

// ---------------------------------------------------------------------------------------
// check

fn check(root: &Path, no_verify: bool, allow_dirty: bool) -> Result {
    let workspace = Workspace::load(root)?;
    let mut problems = manifest_problems(&workspace, root);
    let order = workspace.publish_order()?;
    if order.is_empty() {
        problems.push("no publishable crate in the workspace".into());
    }
    if !problems.is_empty() {
        return Err(format!(
            "release check found problems:\n  {}",
            problems.join("\n  ")
        ));
    }
    let names: Vec<&str> = order.iter().map(|p| p.name.as_str()).collect();
    eprintln!(
        "publishable crates, in dependency order: {}",
        names.join(", ")
    );

    match last_tag(root)? {
        None => eprintln!("no git tag yet: all crates are new since no tag"),
        Some(tag) => {
            let changed = changed_since(root, &tag, &order)?;
            if changed.is_empty() {
                eprintln!("no crate changed since {tag}");
            } else {
                eprintln!("changed since {tag}: {}", changed.join(", "));
            }
        }
    }

    crate::step("package every publishable crate in dependency order");
    let mut package = crate::cargo();
    package.current_dir(root).arg("package");
    for name in &names {
        package.args(["--package", name]);
    }
    if no_verify {
        package.arg("--no-verify");
    }
    if allow_dirty {
        package.arg("--allow-dirty");
    }
    crate::run(&mut package)?;
    eprintln!("\nrelease check: {} crates package", names.len());
    Ok(())
}

/// Everything a publishable crate's manifest lacks, and publishable crates that should not
/// be.
pub(crate) fn manifest_problems(workspace: &Workspace, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let crates_dir = root.join("crates");
    let workspace_names: BTreeSet<&str> =
        workspace.packages.iter().map(|p| p.name.as_str()).collect();
    for package in &workspace.packages {
        let name = &package.name;
        if !package.publish {
            continue;
        }
        if !package.dir().starts_with(&crates_dir) {
            problems.push(format!(
                "{name} is publishable but not under crates/: add `publish = false`"
            ));
        }
        for (field, value) in [
            ("description", &package.description),
            ("license", &package.license),
            ("repository", &package.repository),
            ("rust-version", &package.rust_version),
        ] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{name}: no `{field}` in Cargo.toml"));
            }
        }
        match &package.readme {
            None => problems.push(format!("{name}: no `readme` in Cargo.toml")),
            Some(readme) if !package.dir().join(readme).is_file() => problems.push(format!(
                "{name}: its readme {readme} does not exist in {}",
                package.dir().display()
            )),
            Some(_) => {}
        }
        match std::fs::read_to_string(&package.manifest_path) {
            Ok(text) => {
                for feature in undocumented_features(&text) {
                    problems.push(format!(
                        "{name}: feature `{feature}` has no `## ` comment line above it in \
                         [features]"
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "cannot read {}: {e}",
                package.manifest_path.display()
            )),
        }
        for dep in &package.dependencies {
            let internal = dep.path.is_some() || workspace_names.contains(dep.name.as_str());
            if !internal || dep.kind == Kind::Dev {
                continue;
            }
            if dep.req == "*" {
                problems.push(format!(
                    "{name}: its dependency on {} has no `version` (crates.io needs one)",
                    dep.name
                ));
            }
            if workspace.package(&dep.name).is_some_and(|d| !d.publish) {
                problems.push(format!(
                    "{name} depends on {}, which is `publish = false`",
                    dep.name
                ));
            }
        }
    }
    problems
}

/// The features of a manifest (other than `default`) without a documentation comment: a
/// line starting with `## ` directly above the feature's key (the document-features
/// convention, which the crates' docs can render).
pub(crate) fn undocumented_features(manifest: &str) -> Vec<String> {
    let Ok(document) = manifest.parse::<DocumentMut>() else {
        return vec!["(Cargo.toml does not parse)".into()];
    };
    let Some(features) = document.get("features").and_then(Item::as_table) else {
        return Vec::new();
    };
    features
        .iter()
        .filter(|(name, _)| *name != "default")
        .filter(|(name, _)| {
            let prefix = features
                .key(name)
                .and_then(|key| key.leaf_decor().prefix())
                .and_then(|raw| raw.as_str())
                .unwrap_or("");
            let last = prefix.trim_end_matches([' ', '\t']).lines().last();
            !last.is_some_and(|line| {
                line.trim_start()
                    .strip_prefix("## ")
                    .is_some_and(|doc| !doc.trim().is_empty())
            })
        })
        .map(|(name, _)| name.to_string())
        .collect()
}

fn git(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git {}: {e}", args.join(" ")))
}

/// The most recent tag reachable from HEAD, if any.
fn last_tag(root: &Path) -> Result<Option<String>> {
    let output = git(root, &["describe", "--tags", "--abbrev=0"])?;
    let tag = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok((output.status.success() && !tag.is_empty()).then_some(tag))
}

/// The crates whose directories changed between `tag` and HEAD.
fn changed_since(root: &Path, tag: &str, crates: &[&Package]) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for package in crates {
        let dir = package.dir().to_string_lossy().into_owned();
        let output = git(root, &["diff", "--quiet", tag, "HEAD", "--", &dir])?;
        if output.status.code() == Some(1) {
            changed.push(package.name.clone());
        } else if !output.status.success() {
            return Err(format!(
                "git diff {tag} HEAD failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(changed)
}

// ---------------------------------------------------------------------------------------
// prepare

fn prepare(root: &Path, version: &str, allow_dirty: bool, no_ci: bool) -> Result {
    let root_manifest = root.join("Cargo.toml");
    let root_text = read(&root_manifest)?;
    let current = workspace_version(&root_text)?;
    let released = |v: &Version| -> Result<bool> {
        let tag = git(
            root,
            &["rev-parse", "--verify", "--quiet", &format!("v{v}")],
        )?;
        let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).unwrap_or_default();
        Ok(tag.status.success() || changelog.contains(&format!("## [{v}]")))
    };
    let new = next_version(&current, version, released(&current)?)?;

    if !allow_dirty {
        let status = git(root, &["status", "--porcelain"])?;
        if !status.status.success() {
            return Err("git status failed: is this a git checkout?".into());
        }
        if !status.stdout.is_empty() {
            return Err(format!(
                "the working tree has uncommitted changes (commit them, or pass \
                 --allow-dirty):\n{}",
                String::from_utf8_lossy(&status.stdout)
            ));
        }
    }

    let workspace = Workspace::load(root)?;
    let repository = workspace
        .packages
        .iter()
        .find_map(|p| p.repository.clone())
        .ok_or("no crate names a repository")?;
    let changelog_path = root.join("CHANGELOG.md");
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let changelog = roll_changelog(&read(&changelog_path)?, &new, &date, &repository)?;

    // Every edit is computed before anything is written.
    let mut manifests: Vec<PathBuf> = vec![root_manifest];
    manifests.extend(workspace.packages.iter().map(|p| p.manifest_path.clone()));
    let mut edits = Vec::new();
    for path in &manifests {
        let text = read(path)?;
        let bumped = bump_manifest(&text, &new)?;
        if bumped != text {
            edits.push((path.clone(), bumped));
        }
    }
    for (path, text) in &edits {
        write(path, text)?;
        eprintln!("bumped {}", path.display());
    }
    write(&changelog_path, &changelog)?;
    eprintln!("rolled CHANGELOG.md: [Unreleased] is now [{new}] - {date}");

    crate::step("refresh Cargo.lock");
    // Only the workspace's own entries change, which needs no index: offline first, and
    // online only if cargo finds it needs to read the index after all.
    let offline =
        crate::run(
            crate::cargo()
                .current_dir(root)
                .args(["update", "--workspace", "--offline"]),
        );
    if offline.is_err() {
        crate::run(
            crate::cargo()
                .current_dir(root)
                .args(["update", "--workspace"]),
        )?;
    }

    if no_ci {
        eprintln!("\n--no-ci: skipping `cargo xtask ci`");
    } else {
        crate::ci(&[])?;
    }
    eprintln!(
        "\nprepared {new}. Next: review and commit (\"Release {new}\"), then \
         `cargo xtask release check` and `cargo xtask release publish --dry-run`."
    );
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `[workspace.package] version` of the root manifest.
pub(crate) fn workspace_version(root_manifest: &str) -> Result<Version> {
    let document: DocumentMut = root_manifest
        .parse()
        .map_err(|e| format!("the root Cargo.toml does not parse: {e}"))?;
    let version = document
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(Item::as_str)
        .ok_or("the root Cargo.toml has no [workspace.package] version")?;
    Version::parse(version).map_err(|e| format!("the workspace version {version:?}: {e}"))
}

/// The version to release: `requested` must be valid semver and greater than `current`,
/// or equal to it while `current` itself was never released (the first release of the
/// version the manifests already carry).
pub(crate) fn next_version(
    current: &Version,
    requested: &str,
    current_released: bool,
) -> Result<Version> {
    let requested = requested.strip_prefix('v').unwrap_or(requested);
    let new = Version::parse(requested)
        .map_err(|e| format!("{requested:?} is not a semver version: {e}"))?;
    if !new.build.is_empty() {
        return Err(format!(
            "{new}: build metadata is ignored by cargo's version ordering; leave it out"
        ));
    }
    if new < *current || (new == *current && current_released) {
        return Err(format!(
            "{new} is not greater than the current version {current}"
        ));
    }
    Ok(new)
}

/// Sets `[workspace.package] version` (in the root manifest) and every path dependency's
/// `version` requirement (in `[workspace.dependencies]` and in every dependency table,
/// target-specific ones included) to `version`, keeping comments and layout. A requirement
/// operator (`=`, `~`, `^`) in front of a version is kept.
pub(crate) fn bump_manifest(manifest: &str, version: &Version) -> Result<String> {
    let mut document: DocumentMut = manifest
        .parse()
        .map_err(|e| format!("a Cargo.toml does not parse: {e}"))?;
    let version_string = version.to_string();
    if let Some(workspace) = document
        .get_mut("workspace")
        .and_then(Item::as_table_like_mut)
    {
        if let Some(package) = workspace
            .get_mut("package")
            .and_then(Item::as_table_like_mut)
            && let Some(item) = package.get_mut("version")
            && item.is_str()
        {
            set_keeping_decor(item, &version_string);
        }
        if let Some(deps) = workspace.get_mut("dependencies") {
            bump_dependency_table(deps, version);
        }
    }
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = document.get_mut(table) {
            bump_dependency_table(deps, version);
        }
    }
    if let Some(targets) = document.get_mut("target").and_then(Item::as_table_like_mut) {
        for (_, target) in targets.iter_mut() {
            if let Some(target) = target.as_table_like_mut() {
                for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
                    if let Some(deps) = target.get_mut(table) {
                        bump_dependency_table(deps, version);
                    }
                }
            }
        }
    }
    Ok(document.to_string())
}

fn bump_dependency_table(deps: &mut Item, version: &Version) {
    let Some(deps) = deps.as_table_like_mut() else {
        return;
    };
    for (_, dep) in deps.iter_mut() {
        let Some(dep) = dep.as_table_like_mut() else {
            continue;
        };
        if !dep.contains_key("path") {
            continue;
        }
        if let Some(item) = dep.get_mut("version")
            && let Some(old) = item.as_str()
        {
            let operator: String = old
                .chars()
                .take_while(|c| matches!(c, '=' | '~' | '^' | ' '))
                .collect();
            set_keeping_decor(item, &format!("{operator}{version}"));
        }
    }
}

/// Replaces a string value, keeping the whitespace and comments around it.
fn set_keeping_decor(item: &mut Item, text: &str) {
    if let Some(value) = item.as_value_mut() {
        let decor = value.decor().clone();
        *value = Value::from(text);
        *value.decor_mut() = decor;
    }
}

/// Turns the `## [Unreleased]` section into `## [<version>] - <date>` under a new, empty
/// `## [Unreleased]`, and updates the link references at the bottom (Keep a Changelog
/// style): `[Unreleased]` compares the new tag with HEAD, `[<version>]` compares the
/// previous release's tag with the new one (or links the tag, for a first release).
pub(crate) fn roll_changelog(
    changelog: &str,
    version: &Version,
    date: &str,
    repository: &str,
) -> Result<String> {
    const HEADING: &str = "## [Unreleased]";
    let lines: Vec<&str> = changelog.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == HEADING)
        .ok_or("CHANGELOG.md has no `## [Unreleased]` section")?;
    let is_link = |l: &str| l.starts_with('[') && l.contains("]: ");
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## ") || is_link(l))
        .map_or(lines.len(), |i| start + 1 + i);
    if lines[start + 1..end].iter().all(|l| l.trim().is_empty()) {
        return Err("the [Unreleased] section of CHANGELOG.md is empty: say what changed".into());
    }
    if lines
        .iter()
        .any(|l| l.starts_with(&format!("## [{version}]")))
    {
        return Err(format!("CHANGELOG.md already has a section for {version}"));
    }
    // The release before this one: the first versioned heading below Unreleased.
    let previous = lines[end..].iter().find_map(|l| {
        l.strip_prefix("## [")
            .and_then(|rest| rest.split(']').next())
            .filter(|v| Version::parse(v).is_ok())
    });
    let repository = repository.trim_end_matches('/');
    let unreleased_link = format!("[Unreleased]: {repository}/compare/v{version}...HEAD");
    let version_link = match previous {
        Some(previous) => format!("[{version}]: {repository}/compare/v{previous}...v{version}"),
        None => format!("[{version}]: {repository}/releases/tag/v{version}"),
    };

    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 4);
    out.extend(lines[..start].iter().map(|l| l.to_string()));
    out.push(HEADING.into());
    out.push(String::new());
    out.push(format!("## [{version}] - {date}"));
    let mut linked = false;
    for line in &lines[start + 1..] {
        if line.starts_with("[Unreleased]: ") {
            out.push(unreleased_link.clone());
            out.push(version_link.clone());
            linked = true;
        } else {
            out.push(line.to_string());
        }
    }
    if !linked {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        out.push(String::new());
        out.push(unreleased_link);
        out.push(version_link);
    }
    Ok(out.join("\n") + "\n")
}

// ---------------------------------------------------------------------------------------
// publish --dry-run

/// What the crates.io index knows of a crate name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// No crate of that name.
    Free,
    /// The name exists, with these versions.
    Versions(Vec<String>),
}

fn publish_dry_run(root: &Path, no_verify: bool, allow_dirty: bool) -> Result {
    let workspace = Workspace::load(root)?;
    let order = workspace.publish_order()?;
    let version = workspace_version(&read(&root.join("Cargo.toml"))?)?;
    let mut to_publish = Vec::new();
    let mut taken = Vec::new();
    for package in &order {
        let name = &package.name;
        let published = index_lookup(name)?;
        match decide(package, &published, || published_repository(name))? {
            Decision::Publish(note) => {
                eprintln!("{name} {}: {note}", package.version);
                to_publish.push(name.as_str());
            }
            Decision::Skip => eprintln!("{name} {}: already published, skipped", package.version),
            Decision::Taken(problem) => taken.push(problem),
        }
    }
    if !taken.is_empty() {
        return Err(taken.join("\n"));
    }
    if to_publish.is_empty() {
        eprintln!("\nevery crate is already published at its version");
    } else {
        crate::step("cargo publish --dry-run, in dependency order");
        let mut publish = crate::cargo();
        publish.current_dir(root).args(["publish", "--dry-run"]);
        for name in &to_publish {
            publish.args(["--package", name]);
        }
        if no_verify {
            publish.arg("--no-verify");
        }
        if allow_dirty {
            publish.arg("--allow-dirty");
        }
        crate::run(&mut publish)?;
    }
    println!("git tag -a v{version} -m \"ocikit {version}\"");
    Ok(())
}

/// What to do with one crate in a publishing run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Publish it (why, for the log).
    Publish(String),
    /// Its version is already on crates.io.
    Skip,
    /// Its name belongs to another project.
    Taken(String),
}

/// Decides from the index what happens to `package`. When the name exists without our
/// version, `their_repository` (asked only then) tells whether the crate is ours: the same
/// repository as ours, or another project's.
pub(crate) fn decide(
    package: &Package,
    published: &Published,
    their_repository: impl FnOnce() -> Result<Option<String>>,
) -> Result<Decision> {
    Ok(match published {
        Published::Free => Decision::Publish("new on crates.io".into()),
        Published::Versions(versions) if versions.contains(&package.version) => Decision::Skip,
        Published::Versions(versions) => {
            let theirs = their_repository()?;
            if theirs.is_some() && theirs == package.repository {
                Decision::Publish(format!(
                    "to publish (crates.io has {})",
                    versions.join(", ")
                ))
            } else {
                Decision::Taken(format!(
                    "the name `{}` is taken on crates.io by another project (versions {}; \
                     repository {}, ours is {})",
                    package.name,
                    versions.join(", "),
                    theirs.as_deref().unwrap_or("not given"),
                    package.repository.as_deref().unwrap_or("not given"),
                ))
            }
        }
    })
}

/// The path of a crate's file in a sparse cargo index.
pub(crate) fn index_path(name: &str) -> String {
    let name = name.to_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// The versions in a sparse index file (one JSON object per line).
pub(crate) fn index_versions(file: &str) -> Result<Vec<String>> {
    file.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("a bad line in the crates.io index: {e}"))?;
            entry["vers"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "an index line without `vers`".to_string())
        })
        .collect()
}

/// Looks a name up in crates.io's sparse index (through curl: crates.io's web API is not
/// reachable from every machine that can reach the index).
fn index_lookup(name: &str) -> Result<Published> {
    let url = format!("{INDEX}/{}", index_path(name));
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--location",
            "--max-time",
            "60",
            "--user-agent",
            "ocikit-xtask (release dry run)",
            "--write-out",
            "\n%{http_code}",
            &url,
        ])
        .output()
        .map_err(|e| format!("cannot run curl to read {url}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let body = String::from_utf8_lossy(&output.stdout);
    let (file, status) = body.rsplit_once('\n').unwrap_or(("", &body));
    match status.trim() {
        "200" => Ok(Published::Versions(index_versions(file)?)),
        "404" | "410" => Ok(Published::Free),
        other => Err(format!("{url} answered HTTP {other}")),
    }
}

/// The repository named by the newest published version of a crate, from `cargo info`
/// (run outside the workspace, so that it asks crates.io, not the local package).
fn published_repository(name: &str) -> Result<Option<String>> {
    let outside = std::env::temp_dir();
    let output = crate::cargo()
        .current_dir(outside)
        .args(["info", "--registry", "crates-io", name])
        .output()
        .map_err(|e| format!("cannot run cargo info {name}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo info {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("repository: "))
        .map(|r| r.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::workspace;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("a version")
    }

    #[test]
    fn next_version_refuses_lower_equal_and_invalid() {
        assert_eq!(next_version(&v("0.1.0"), "0.2.0", true), Ok(v("0.2.0")));
        assert_eq!(next_version(&v("0.1.0"), "v0.1.1", true), Ok(v("0.1.1")));
        assert_eq!(
            next_version(&v("1.0.0-rc.1"), "1.0.0", true),
            Ok(v("1.0.0"))
        );
        let lower = next_version(&v("0.2.0"), "0.1.9", false).expect_err("lower");
        assert!(
            lower.contains("not greater than the current version 0.2.0"),
            "{lower}"
        );
        let equal = next_version(&v("0.2.0"), "0.2.0", true).expect_err("equal, released");
        assert!(equal.contains("not greater"), "{equal}");
        let pre = next_version(&v("1.0.0"), "1.0.0-rc.1", false).expect_err("pre < release");
        assert!(pre.contains("not greater"), "{pre}");
        let bad = next_version(&v("0.1.0"), "0.2", false).expect_err("not semver");
        assert!(bad.contains("not a semver version"), "{bad}");
        let build = next_version(&v("0.1.0"), "0.2.0+abc", false).expect_err("build metadata");
        assert!(build.contains("build metadata"), "{build}");
        // The version the manifests carry may be released once, while it never was.
        assert_eq!(next_version(&v("0.1.0"), "0.1.0", false), Ok(v("0.1.0")));
    }

    const ROOT: &str = r#"[workspace]
members = ["crates/*"]

[workspace.package]
version = "0.1.0" # the one version of every crate
edition = "2024"

[workspace.dependencies]
# Internal crates.
ocikit-digest = { path = "crates/ocikit-digest", version = "0.1.0" }
ocikit-codec = { path = "crates/ocikit-codec", version = "=0.1.0", default-features = false }
# An external crate that happens to share the version.
bytes = { version = "0.1.0" }
serde = "1"
"#;

    const CRATE: &str = r#"[package]
name = "ocikit-layout"
version.workspace = true

[dependencies]
ocikit-digest.workspace = true
local = { path = "../local", version = "~0.1.0" }
other = "0.1.0"

[dev-dependencies.helper]
path = "../helper"
version = "0.1.0"

[target.'cfg(unix)'.dependencies]
unixy = { path = "../unixy", version = "0.1.0", optional = true }
"#;

    #[test]
    fn bumps_the_workspace_and_internal_requirements_in_a_copy_of_the_manifests() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("Cargo.toml");
        let member = dir.path().join("crates/ocikit-layout/Cargo.toml");
        std::fs::create_dir_all(member.parent().expect("parent")).expect("mkdir");
        std::fs::write(&root, ROOT).expect("write");
        std::fs::write(&member, CRATE).expect("write");

        let new = v("0.2.0");
        for path in [&root, &member] {
            let text = std::fs::read_to_string(path).expect("read");
            std::fs::write(path, bump_manifest(&text, &new).expect("bumps")).expect("write");
        }
        let root_text = std::fs::read_to_string(&root).expect("read");
        assert_eq!(workspace_version(&root_text), Ok(v("0.2.0")));
        assert!(root_text.contains(r#"version = "0.2.0" # the one version of every crate"#));
        assert!(
            root_text.contains(
                r#"ocikit-digest = { path = "crates/ocikit-digest", version = "0.2.0" }"#
            )
        );
        assert!(root_text.contains(r#"version = "=0.2.0", default-features = false }"#));
        assert!(
            root_text.contains(r#"bytes = { version = "0.1.0" }"#),
            "not a path dep"
        );
        assert!(
            root_text.contains("# Internal crates.\n"),
            "comments are kept"
        );

        let crate_text = std::fs::read_to_string(&member).expect("read");
        assert!(crate_text.contains(r#"local = { path = "../local", version = "~0.2.0" }"#));
        assert!(
            crate_text.contains(r#"other = "0.1.0""#),
            "registry dep untouched"
        );
        assert!(crate_text.contains("path = \"../helper\"\nversion = \"0.2.0\""));
        assert!(crate_text.contains(r#"unixy = { path = "../unixy", version = "0.2.0""#));
        assert!(crate_text.contains("version.workspace = true"));
        // Bumping again to the same version changes nothing.
        assert_eq!(bump_manifest(&crate_text, &new).expect("bumps"), crate_text);
    }

    #[test]
    fn bumps_the_real_workspace_manifest() {
        let text = std::fs::read_to_string(crate::root().join("Cargo.toml")).expect("read");
        let current = workspace_version(&text).expect("a version");
        let mut next = current.clone();
        next.minor += 1;
        next.patch = 0;
        let bumped = bump_manifest(&text, &next).expect("bumps");
        assert_eq!(workspace_version(&bumped), Ok(next.clone()));
        let document: DocumentMut = bumped.parse().expect("parses");
        let deps = document["workspace"]["dependencies"]
            .as_table()
            .expect("a table");
        let mut internal = 0;
        for (name, dep) in deps.iter() {
            if dep.get("path").is_some() {
                internal += 1;
                assert_eq!(
                    dep.get("version").and_then(Item::as_str),
                    Some(next.to_string().as_str()),
                    "{name}"
                );
            }
        }
        assert!(internal >= 6, "the internal crates are declared with paths");
    }

    const CHANGELOG: &str = "# Changelog

All notable changes are documented here.

## [Unreleased]

### Added
- Everything.

[Unreleased]: https://github.com/o/o/commits/HEAD
";

    #[test]
    fn rolls_the_first_release() {
        let rolled = roll_changelog(
            CHANGELOG,
            &v("0.1.0"),
            "2026-12-02",
            "https://github.com/o/o/",
        )
        .expect("rolls");
        assert_eq!(
            rolled,
            "# Changelog

All notable changes are documented here.

## [Unreleased]

## [0.1.0] - 2026-12-02

### Added
- Everything.

[Unreleased]: https://github.com/o/o/compare/v0.1.0...HEAD
[0.1.0]: https://github.com/o/o/releases/tag/v0.1.0
"
        );
        // The rolled changelog has an empty Unreleased section: rolling again is refused.
        let again = roll_changelog(&rolled, &v("0.2.0"), "2026-12-03", "https://github.com/o/o")
            .expect_err("empty");
        assert!(again.contains("is empty"), "{again}");
        // A later release compares with the previous one.
        let with_news = rolled.replace(
            "## [Unreleased]\n",
            "## [Unreleased]\n\n### Fixed\n- A bug.\n",
        );
        let second = roll_changelog(
            &with_news,
            &v("0.2.0"),
            "2026-12-03",
            "https://github.com/o/o",
        )
        .expect("rolls");
        assert!(second.contains(
            "## [Unreleased]\n\n## [0.2.0] - 2026-12-03\n\n### Fixed\n- A bug.\n\n## [0.1.0] - 2026-12-02\n"
        ));
        assert!(second.contains(
            "[Unreleased]: https://github.com/o/o/compare/v0.2.0...HEAD\n\
             [0.2.0]: https://github.com/o/o/compare/v0.1.0...v0.2.0\n\
             [0.1.0]: https://github.com/o/o/releases/tag/v0.1.0\n"
        ));
        let duplicate = roll_changelog(&with_news, &v("0.1.0"), "x", "https://github.com/o/o")
            .expect_err("0.1.0 exists");
        assert!(duplicate.contains("already has a section"), "{duplicate}");
    }

    #[test]
    fn roll_needs_an_unreleased_section_and_adds_missing_links() {
        let none = roll_changelog("# Changelog\n\n## [0.1.0]\n- x\n", &v("0.2.0"), "d", "r")
            .expect_err("no Unreleased");
        assert!(none.contains("no `## [Unreleased]`"), "{none}");
        let unlinked = roll_changelog("## [Unreleased]\n- x\n\n\n", &v("1.0.0"), "d", "https://r")
            .expect("rolls");
        assert_eq!(
            unlinked,
            "## [Unreleased]\n\n## [1.0.0] - d\n- x\n\n\
             [Unreleased]: https://r/compare/v1.0.0...HEAD\n\
             [1.0.0]: https://r/releases/tag/v1.0.0\n"
        );
    }

    #[test]
    fn the_real_changelog_rolls() {
        let text = std::fs::read_to_string(crate::root().join("CHANGELOG.md")).expect("read");
        let version = workspace_version(
            &std::fs::read_to_string(crate::root().join("Cargo.toml")).expect("read"),
        )
        .expect("version");
        let mut next = version.clone();
        next.major += 1;
        let rolled = roll_changelog(
            &text,
            &next,
            "2030-01-01",
            "https://github.com/ocikit/ocikit",
        )
        .expect("CHANGELOG.md has a non-empty [Unreleased] section");
        assert!(rolled.contains(&format!("## [{next}] - 2030-01-01")));
    }

    #[test]
    fn finds_undocumented_features() {
        let manifest = r#"[package]
name = "x"

[features]
default = ["a"]
## Documented.
a = []
# A plain comment is not documentation.
b = []
c = ["a"]
## Documented over
## two lines.
d = [
    "a",
]
##
e = []
"#;
        assert_eq!(undocumented_features(manifest), ["b", "c", "e"]);
        assert!(undocumented_features("[package]\nname = \"x\"\n").is_empty());
    }

    #[test]
    fn manifest_problems_name_every_missing_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let mut ws = workspace(&[
            ("good", true, &[]),
            ("bad", true, &["good", "tests"]),
            ("tests", false, &[]),
        ]);
        for package in &mut ws.packages {
            let crate_dir = root.join("crates").join(&package.name);
            std::fs::create_dir_all(&crate_dir).expect("mkdir");
            package.manifest_path = crate_dir.join("Cargo.toml");
            for dep in &mut package.dependencies {
                dep.path = Some(root.join("crates").join(&dep.name));
            }
        }
        let good = &mut ws.packages[0];
        good.description = Some("Good".into());
        good.license = Some("MIT".into());
        good.repository = Some("https://x".into());
        good.readme = Some("README.md".into());
        good.rust_version = Some("1.89".into());
        std::fs::write(good.dir().join("README.md"), "# good\n").expect("write");
        std::fs::write(
            &good.manifest_path,
            "[package]\nname = \"good\"\n[features]\n## Yes.\nf = []\n",
        )
        .expect("write");
        let bad = &mut ws.packages[1];
        bad.description = Some("  ".into());
        bad.readme = Some("README.md".into());
        bad.dependencies[0].req = "*".into();
        std::fs::write(
            &bad.manifest_path,
            "[package]\nname = \"bad\"\n[features]\nf = []\n",
        )
        .expect("write");
        std::fs::write(
            root.join("crates/tests/Cargo.toml"),
            "[package]\nname = \"tests\"\n",
        )
        .expect("write");

        let problems = manifest_problems(&ws, root);
        let expected = [
            "bad: no `description` in Cargo.toml",
            "bad: no `license` in Cargo.toml",
            "bad: no `repository` in Cargo.toml",
            "bad: no `rust-version` in Cargo.toml",
            "bad: its readme README.md does not exist",
            "bad: feature `f` has no `## ` comment",
            "bad: its dependency on good has no `version`",
            "bad depends on tests, which is `publish = false`",
        ];
        for text in expected {
            assert!(
                problems.iter().any(|p| p.contains(text)),
                "missing {text:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");

        // A publishable package outside crates/ is reported too.
        ws.packages[0].manifest_path = root.join("elsewhere/Cargo.toml");
        let problems = manifest_problems(&ws, root);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("good is publishable but not under crates/"))
        );
    }

    #[test]
    fn the_workspace_manifests_are_complete() {
        let root = crate::root();
        let ws = Workspace::load(&root).expect("cargo metadata");
        assert_eq!(manifest_problems(&ws, &root), Vec::<String>::new());
        let order: Vec<&str> = ws
            .publish_order()
            .expect("no cycle")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let position = |name: &str| order.iter().position(|n| *n == name);
        assert!(position("ocikit-digest") < position("ocikit-store"));
        assert!(position("ocikit-layout") < position("ocikit-registry"));
        assert!(position("ocikit") < position("ocikit-cli"));
        assert!(!order.contains(&"xtask") && !order.contains(&"ocikit-tests"));
    }

    #[test]
    fn publishing_skips_published_versions_and_refuses_taken_names() {
        let mut ws = workspace(&[("ocikit-digest", true, &[])]);
        let mut ours = ws.packages.remove(0);
        ours.repository = Some("https://github.com/ocikit/ocikit".into());
        let never = || -> Result<Option<String>> { panic!("no need to ask for the repository") };
        assert_eq!(
            decide(&ours, &Published::Free, never),
            Ok(Decision::Publish("new on crates.io".into()))
        );
        let has_ours = Published::Versions(vec!["0.0.1".into(), "0.1.0".into()]);
        assert_eq!(decide(&ours, &has_ours, never), Ok(Decision::Skip));
        let older = Published::Versions(vec!["0.0.1".into()]);
        assert_eq!(
            decide(&ours, &older, || Ok(ours.repository.clone())),
            Ok(Decision::Publish("to publish (crates.io has 0.0.1)".into()))
        );
        let Ok(Decision::Taken(problem)) = decide(&ours, &older, || {
            Ok(Some("https://github.com/someone/else".into()))
        }) else {
            panic!("a name with another repository is taken");
        };
        assert!(problem.contains("`ocikit-digest` is taken"), "{problem}");
        assert!(
            problem.contains("https://github.com/someone/else"),
            "{problem}"
        );
        assert!(matches!(
            decide(&ours, &older, || Ok(None)),
            Ok(Decision::Taken(_))
        ));
        assert_eq!(
            decide(&ours, &older, || Err("offline".into())),
            Err("offline".to_string())
        );
    }

    #[test]
    fn lists_the_crates_changed_since_the_last_tag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .current_dir(root)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?}");
        };
        let mut ws = workspace(&[("a", true, &[]), ("b", true, &[])]);
        for package in &mut ws.packages {
            let crate_dir = root.join("crates").join(&package.name);
            std::fs::create_dir_all(&crate_dir).expect("mkdir");
            std::fs::write(crate_dir.join("lib.rs"), "// one\n").expect("write");
            package.manifest_path = crate_dir.join("Cargo.toml");
        }
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "one"]);
        assert_eq!(last_tag(root), Ok(None));
        git(&["tag", "-a", "v0.1.0", "-m", "v0.1.0"]);
        assert_eq!(last_tag(root), Ok(Some("v0.1.0".into())));
        std::fs::write(root.join("crates/b/lib.rs"), "// two\n").expect("write");
        git(&["commit", "-q", "-am", "two"]);
        let crates: Vec<&Package> = ws.packages.iter().collect();
        assert_eq!(
            changed_since(root, "v0.1.0", &crates),
            Ok(vec!["b".to_string()])
        );
        assert!(
            changed_since(root, "v9", &crates).is_err(),
            "an unknown tag fails"
        );
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn refuses_to_publish_and_unknown_options_before_doing_anything() {
        for command in [&["publish"][..], &["publish", "--no-verify"]] {
            let refusal = run(&args(command)).expect_err("never publishes");
            assert!(refusal.contains("runs only with --dry-run"), "{refusal}");
        }
        let typo = run(&args(&["check", "--no-verfy"])).expect_err("a typo");
        assert!(typo.contains("unknown option --no-verfy"), "{typo}");
        let wrong_command =
            run(&args(&["prepare", "0.2.0", "--dry-run"])).expect_err("not prepare's");
        assert!(
            wrong_command.contains("unknown option --dry-run"),
            "{wrong_command}"
        );
        let missing = run(&args(&["prepare", "--no-ci"])).expect_err("no version");
        assert!(missing.contains("prepare needs a version"), "{missing}");
        let unknown = run(&args(&["ship"])).expect_err("no such command");
        assert!(
            unknown.contains("unknown or missing release command"),
            "{unknown}"
        );
    }

    #[test]
    fn index_paths_and_versions() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("abc"), "3/a/abc");
        assert_eq!(index_path("Serde"), "se/rd/serde");
        assert_eq!(index_path("ocikit-digest"), "oc/ik/ocikit-digest");
        let file = "{\"name\":\"x\",\"vers\":\"0.1.0\",\"deps\":[]}\n\
                    {\"name\":\"x\",\"vers\":\"0.2.0-rc.1\",\"yanked\":true}\n";
        assert_eq!(
            index_versions(file),
            Ok(vec!["0.1.0".to_string(), "0.2.0-rc.1".to_string()])
        );
        assert!(index_versions("{\"name\":\"x\"}\n").is_err());
        assert!(index_versions("not json\n").is_err());
    }
}
