//! The workspace as `cargo metadata` describes it: the packages, their manifest fields and
//! their dependencies on one another. Only the few fields the release and tidy checks read
//! are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Result;

/// One workspace package.
#[derive(Clone, Debug, Default)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) manifest_path: PathBuf,
    /// False for `publish = false`.
    pub(crate) publish: bool,
    pub(crate) description: Option<String>,
    pub(crate) license: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) readme: Option<String>,
    pub(crate) rust_version: Option<String>,
    pub(crate) features: BTreeMap<String, Vec<String>>,
    pub(crate) dependencies: Vec<Dependency>,
}

impl Package {
    /// The directory holding the package's `Cargo.toml`.
    pub(crate) fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

/// Which table a dependency is declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    Dev,
    Build,
}

/// One dependency of a package, as declared.
#[derive(Clone, Debug)]
pub(crate) struct Dependency {
    pub(crate) name: String,
    /// The version requirement; `*` when the manifest gives none.
    pub(crate) req: String,
    /// Set for path dependencies (the workspace's own crates).
    pub(crate) path: Option<PathBuf>,
    pub(crate) kind: Kind,
    pub(crate) optional: bool,
}

/// The workspace: its members, in `cargo metadata`'s order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Workspace {
    pub(crate) packages: Vec<Package>,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` in `root`.
    pub(crate) fn load(root: &Path) -> Result<Workspace> {
        let output = crate::cargo()
            .current_dir(root)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Workspace::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Parses `cargo metadata --format-version 1` output.
    pub(crate) fn parse(json: &str) -> Result<Workspace> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("bad cargo metadata JSON: {e}"))?;
        let members: BTreeSet<&str> = value["workspace_members"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let packages = value["packages"]
            .as_array()
            .ok_or("cargo metadata has no packages")?
            .iter()
            .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
            .map(package)
            .collect::<Result<Vec<_>>>()?;
        Ok(Workspace { packages })
    }

    /// The package named `name`.
    pub(crate) fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// The publishable packages, each after the workspace packages it depends on (through
    /// normal and build dependencies; dev-dependencies do not order publishing). Ties are
    /// broken by name, so the order is stable.
    pub(crate) fn publish_order(&self) -> Result<Vec<&Package>> {
        let publishable: Vec<&Package> = self.packages.iter().filter(|p| p.publish).collect();
        let names: BTreeSet<&str> = publishable.iter().map(|p| p.name.as_str()).collect();
        let mut waiting: BTreeMap<&str, BTreeSet<&str>> = publishable
            .iter()
            .map(|p| {
                let deps = p
                    .dependencies
                    .iter()
                    .filter(|d| d.kind != Kind::Dev && names.contains(d.name.as_str()))
                    .map(|d| d.name.as_str())
                    .collect();
                (p.name.as_str(), deps)
            })
            .collect();
        let mut order = Vec::new();
        while !waiting.is_empty() {
            let ready: Option<&str> = waiting
                .iter()
                .find(|(_, deps)| deps.is_empty())
                .map(|(name, _)| *name);
            let Some(ready) = ready else {
                let stuck: Vec<&str> = waiting.keys().copied().collect();
                return Err(format!(
                    "the workspace crates depend on each other in a cycle: {}",
                    stuck.join(", ")
                ));
            };
            waiting.remove(ready);
            for deps in waiting.values_mut() {
                deps.remove(ready);
            }
            if let Some(package) = self.package(ready) {
                order.push(package);
            }
        }
        Ok(order)
    }
}

fn string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn package(value: &Value) -> Result<Package> {
    let name = string(&value["name"]).ok_or("a package without a name")?;
    let features = value["features"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(feature, enables)| {
                    let enables = enables
                        .as_array()
                        .map(|list| list.iter().filter_map(string).collect())
                        .unwrap_or_default();
                    (feature.clone(), enables)
                })
                .collect()
        })
        .unwrap_or_default();
    let dependencies = value["dependencies"]
        .as_array()
        .map(|deps| deps.iter().map(dependency).collect())
        .unwrap_or_default();
    Ok(Package {
        version: string(&value["version"]).unwrap_or_default(),
        manifest_path: PathBuf::from(string(&value["manifest_path"]).unwrap_or_default()),
        // `publish` is null when unrestricted and a list of registries otherwise
        // (`publish = false` is the empty list).
        publish: value["publish"]
            .as_array()
            .is_none_or(|registries| !registries.is_empty()),
        description: string(&value["description"]),
        license: string(&value["license"]),
        repository: string(&value["repository"]),
        readme: string(&value["readme"]),
        rust_version: string(&value["rust_version"]),
        features,
        dependencies,
        name,
    })
}

fn dependency(value: &Value) -> Dependency {
    Dependency {
        name: string(&value["name"]).unwrap_or_default(),
        req: string(&value["req"]).unwrap_or_else(|| "*".into()),
        path: string(&value["path"]).map(PathBuf::from),
        kind: match value["kind"].as_str() {
            Some("dev") => Kind::Dev,
            Some("build") => Kind::Build,
            _ => Kind::Normal,
        },
        optional: value["optional"].as_bool().unwrap_or(false),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A workspace of `(name, publish, normal path dependencies)`, for tests.
    pub(crate) fn workspace(crates: &[(&str, bool, &[&str])]) -> Workspace {
        Workspace {
            packages: crates
                .iter()
                .map(|(name, publish, deps)| Package {
                    name: name.to_string(),
                    version: "0.1.0".into(),
                    manifest_path: PathBuf::from(format!("/ws/crates/{name}/Cargo.toml")),
                    publish: *publish,
                    dependencies: deps
                        .iter()
                        .map(|dep| Dependency {
                            name: dep.to_string(),
                            req: "^0.1.0".into(),
                            path: Some(PathBuf::from(format!("/ws/crates/{dep}"))),
                            kind: Kind::Normal,
                            optional: false,
                        })
                        .collect(),
                    ..Package::default()
                })
                .collect(),
        }
    }

    #[test]
    fn parses_members_only_with_their_fields() {
        let json = r#"{
            "workspace_members": ["path+file:///ws/a#0.1.0", "path+file:///ws/t#0.0.0"],
            "packages": [
                {"id": "path+file:///ws/a#0.1.0", "name": "a", "version": "0.1.0",
                 "manifest_path": "/ws/a/Cargo.toml", "publish": null,
                 "description": "A", "license": "MIT", "repository": "https://x",
                 "readme": "README.md", "rust_version": "1.89",
                 "features": {"default": ["f"], "f": ["dep:x"]},
                 "dependencies": [
                    {"name": "x", "req": "^1", "kind": null, "optional": true},
                    {"name": "t", "req": "*", "kind": "dev", "optional": false,
                     "path": "/ws/t"}
                 ]},
                {"id": "path+file:///ws/t#0.0.0", "name": "t", "version": "0.0.0",
                 "manifest_path": "/ws/t/Cargo.toml", "publish": [],
                 "features": {}, "dependencies": []},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#x@1.0.0",
                 "name": "x", "version": "1.0.0", "manifest_path": "/r/x/Cargo.toml",
                 "publish": null, "features": {}, "dependencies": []}
            ]
        }"#;
        let ws = Workspace::parse(json).expect("parses");
        assert_eq!(ws.packages.len(), 2, "registry packages are not members");
        let a = ws.package("a").expect("a");
        assert!(a.publish);
        assert_eq!(a.rust_version.as_deref(), Some("1.89"));
        assert_eq!(a.features["f"], vec!["dep:x".to_string()]);
        assert_eq!(a.dependencies[0].kind, Kind::Normal);
        assert!(a.dependencies[0].optional);
        assert_eq!(a.dependencies[1].kind, Kind::Dev);
        assert_eq!(a.dependencies[1].path, Some(PathBuf::from("/ws/t")));
        assert!(!ws.package("t").expect("t").publish);
        assert_eq!(a.dir(), Path::new("/ws/a"));
    }

    #[test]
    fn publish_order_puts_dependencies_first() {
        let ws = workspace(&[
            ("top", true, &["mid", "low"]),
            ("mid", true, &["low"]),
            ("low", true, &[]),
            ("tests", false, &["top"]),
        ]);
        let order: Vec<&str> = ws
            .publish_order()
            .expect("no cycle")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(order, ["low", "mid", "top"]);
    }

    #[test]
    fn publish_order_refuses_a_cycle() {
        let ws = workspace(&[("a", true, &["b"]), ("b", true, &["a"]), ("c", true, &[])]);
        let error = ws.publish_order().expect_err("a cycle");
        assert!(error.contains("cycle: a, b"), "{error}");
    }
}
