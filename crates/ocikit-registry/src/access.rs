//! Who may do what to which repository: the access a request needs (derived from its method,
//! path and query, in Docker's scope terms), and [`AccessPolicy`], per-repository rules for
//! `htpasswd` users and groups in the shape of zot's `accessControl`.
//!
//! # The policy file
//!
//! JSON, as zot's configuration is (a zot `accessControl` section carries over with its
//! actions renamed to Docker's `pull`, `push` and `delete`):
//!
//! ```json
//! {
//!   "groups": { "team-a": { "users": ["alice", "bob"] } },
//!   "repositories": {
//!     "team-a/**": {
//!       "policies": [ { "groups": ["team-a"], "actions": ["pull", "push"] } ],
//!       "defaultPolicy": ["pull"]
//!     },
//!     "public/*": { "anonymousPolicy": ["pull"] }
//!   },
//!   "adminPolicy": { "users": ["root"], "actions": ["pull", "push", "delete"] }
//! }
//! ```
//!
//! - A pattern matches whole repository names: `*` stands for any characters but `/`, `**`
//!   for any characters including `/`, `?` for one character but `/`. When several patterns
//!   match a name, the longest pattern alone decides (as zot does): `team-a/secret` can be
//!   closed inside an open `team-a/**`. A name no pattern matches is closed to everyone but
//!   the admins.
//! - Under the matching pattern a user may do what the `policies` naming them (or one of
//!   their groups) allow, what `defaultPolicy` allows every authenticated user, and what
//!   `anonymousPolicy` allows everyone; a request without credentials gets only
//!   `anonymousPolicy`, which may grant `pull` and nothing else.
//! - `adminPolicy` grants its actions on every repository, and is what the catalog
//!   (`/v2/_catalog`, which names every repository) needs: an admin with `pull`.
//! - The `htpasswd` file a user comes from stays a ceiling: a user of a read-only file pulls
//!   at most, whatever the policy says.
//! - Unknown fields, unknown actions, undefined groups and malformed patterns are refused
//!   when the file is read ([`Error::AccessPolicy`]), never silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::http::Method;
use ocikit_digest::reference::validate_name;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::route::{Query, Route};

/// Largest policy file read, in bytes.
const MAX_POLICY_FILE: u64 = 1 << 20;
/// Longest repository pattern (a repository name is at most 255 bytes).
const MAX_PATTERN: usize = 512;

/// Something a request does to a repository, in Docker's token-scope words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Read manifests, blobs, tags and referrers (`GET`, `HEAD`).
    Pull,
    /// Upload blobs and push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The action's name in a scope or a policy file: `pull`, `push` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        match text {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// What a request needs access to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// These actions on this repository (`repository:NAME:ACTIONS`).
    Repository { name: String, actions: Vec<Action> },
    /// The list of all repositories (`registry:catalog:*`).
    Catalog,
}

impl Need {
    /// The Docker token scope naming this need.
    pub(crate) fn scope(&self) -> String {
        match self {
            Need::Repository { name, actions } => {
                let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                format!("repository:{name}:{}", actions.join(","))
            }
            Need::Catalog => "registry:catalog:*".to_owned(),
        }
    }
}

/// The access a request needs, as Distribution derives it: `GET`/`HEAD` pull, uploads and
/// manifest pushes pull and push (a cross-repository mount also pulls the repository it
/// mounts from), deletions of manifests, tags and blobs delete, the catalog needs
/// `registry:catalog:*`. The base endpoint and paths that name no endpoint need nothing but
/// an authenticated request. Cancelling or asking about an upload is part of pushing.
pub(crate) fn needs(method: &Method, route: Option<&Route>, query: &Query) -> Vec<Need> {
    let read = *method == Method::GET || *method == Method::HEAD;
    let repository = |name: &str, actions: &[Action]| Need::Repository {
        name: name.to_owned(),
        actions: actions.to_vec(),
    };
    let push = [Action::Pull, Action::Push];
    match route {
        None | Some(Route::Base) => Vec::new(),
        Some(Route::Catalog) => vec![Need::Catalog],
        Some(Route::Uploads { name }) => {
            let mut needs = vec![repository(name, &push)];
            if query.first("mount").is_some()
                && let Some(from) = query.first("from")
                && from != name
                && validate_name(from).is_ok()
            {
                needs.push(repository(from, &[Action::Pull]));
            }
            needs
        }
        Some(Route::Upload { name, .. }) => vec![repository(name, &push)],
        Some(
            Route::Blob { name, .. }
            | Route::Manifest { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. },
        ) => {
            if read {
                vec![repository(name, &[Action::Pull])]
            } else if *method == Method::DELETE {
                vec![repository(name, &[Action::Delete])]
            } else {
                vec![repository(name, &push)]
            }
        }
    }
}

/// Per-repository access rules for `htpasswd` users and their groups (see the [module
/// documentation](self) for the file and how it is judged).
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    groups: BTreeMap<String, BTreeSet<String>>,
    repositories: Vec<(Pattern, Rules)>,
    admin: Grantees,
}

#[derive(Clone, Debug, Default)]
struct Grantees {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    actions: BTreeSet<Action>,
}

#[derive(Clone, Debug, Default)]
struct Rules {
    policies: Vec<Grantees>,
    default: BTreeSet<Action>,
    anonymous: BTreeSet<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    groups: BTreeMap<String, GroupForm>,
    #[serde(default)]
    repositories: BTreeMap<String, RulesForm>,
    #[serde(default, rename = "adminPolicy")]
    admin_policy: Option<GranteesForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupForm {
    #[serde(default)]
    users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesForm {
    #[serde(default)]
    policies: Vec<GranteesForm>,
    #[serde(default, rename = "defaultPolicy")]
    default_policy: Vec<String>,
    #[serde(default, rename = "anonymousPolicy")]
    anonymous_policy: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GranteesForm {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
}

impl AccessPolicy {
    /// Reads a policy from its JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<AccessPolicy> {
        let bad = |reason: String| Error::AccessPolicy {
            origin: origin.to_owned(),
            reason,
        };
        let form: FileForm = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let groups: BTreeMap<String, BTreeSet<String>> = form
            .groups
            .into_iter()
            .map(|(name, group)| (name, group.users.into_iter().collect()))
            .collect();
        let actions = |list: Vec<String>, where_: &str| -> Result<BTreeSet<Action>> {
            list.iter()
                .map(|a| {
                    Action::parse(a).ok_or_else(|| {
                        bad(format!(
                            "{where_}: unknown action `{a}` (pull, push or delete)"
                        ))
                    })
                })
                .collect()
        };
        let grantees = |form: GranteesForm, where_: &str| -> Result<Grantees> {
            if let Some(g) = form.groups.iter().find(|g| !groups.contains_key(*g)) {
                return Err(bad(format!("{where_}: group `{g}` is not defined")));
            }
            Ok(Grantees {
                users: form.users.into_iter().collect(),
                groups: form.groups.into_iter().collect(),
                actions: actions(form.actions, where_)?,
            })
        };
        let mut repositories = Vec::new();
        for (text, rules) in form.repositories {
            let pattern = Pattern::parse(&text)
                .map_err(|reason| bad(format!("repository pattern `{text}`: {reason}")))?;
            let where_ = format!("repository pattern `{text}`");
            let anonymous = actions(rules.anonymous_policy, &where_)?;
            if anonymous.iter().any(|a| *a != Action::Pull) {
                return Err(bad(format!(
                    "{where_}: anonymousPolicy may grant pull only"
                )));
            }
            let policies = rules
                .policies
                .into_iter()
                .map(|p| grantees(p, &where_))
                .collect::<Result<Vec<_>>>()?;
            let rules = Rules {
                policies,
                default: actions(rules.default_policy, &where_)?,
                anonymous,
            };
            repositories.push((pattern, rules));
        }
        // Longest pattern first: the first match decides. Equal lengths keep the text's
        // order (the map's), so the choice never depends on anything but the file.
        repositories.sort_by_key(|(p, _)| std::cmp::Reverse(p.text.len()));
        let admin = match form.admin_policy {
            Some(form) => grantees(form, "adminPolicy")?,
            None => Grantees::default(),
        };
        Ok(AccessPolicy {
            groups,
            repositories,
            admin,
        })
    }

    /// Reads the policy file at `path` (see [`AccessPolicy::from_json`]).
    pub fn load(path: &Path) -> Result<AccessPolicy> {
        let read = |source| Error::ReadFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        use std::io::Read as _;
        file.take(MAX_POLICY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_POLICY_FILE {
            return Err(Error::AccessPolicy {
                origin: path.display().to_string(),
                reason: format!("larger than {MAX_POLICY_FILE} bytes"),
            });
        }
        AccessPolicy::from_json(&text, &path.display().to_string())
    }

    /// Whether `user` (`None`: a request without credentials) may do `action` to
    /// `repository`.
    pub fn allows(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        if let Some(user) = user
            && self.admin.actions.contains(&action)
            && self.names(&self.admin, user)
        {
            return true;
        }
        let Some((_, rules)) = self
            .repositories
            .iter()
            .find(|(pattern, _)| pattern.matches(repository))
        else {
            return false;
        };
        if rules.anonymous.contains(&action) {
            return true;
        }
        let Some(user) = user else {
            return false;
        };
        rules.default.contains(&action)
            || rules
                .policies
                .iter()
                .any(|p| p.actions.contains(&action) && self.names(p, user))
    }

    /// Whether `user` may list every repository (an admin allowed to pull).
    pub fn allows_catalog(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| {
            self.admin.actions.contains(&Action::Pull) && self.names(&self.admin, u)
        })
    }

    /// Whether `grantees` names `user`, directly or through a group.
    fn names(&self, grantees: &Grantees, user: &str) -> bool {
        grantees.users.contains(user)
            || grantees.groups.iter().any(|g| {
                self.groups
                    .get(g)
                    .is_some_and(|members| members.contains(user))
            })
    }

    /// Whether `user` may have every one of `needs`.
    pub(crate) fn grants(&self, user: Option<&str>, needs: &[Need]) -> bool {
        needs.iter().all(|need| match need {
            Need::Repository { name, actions } => {
                actions.iter().all(|a| self.allows(user, name, *a))
            }
            Need::Catalog => self.allows_catalog(user),
        })
    }
}

/// A repository-name glob: `*` (no `/`), `**` (anything), `?` (one character but `/`).
#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Segment,
    /// `**`
    Any,
}

impl Pattern {
    fn parse(text: &str) -> std::result::Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty".into());
        }
        if text.len() > MAX_PATTERN {
            return Err(format!("longer than {MAX_PATTERN} bytes"));
        }
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'*') {
                        return Err("`***` is not a pattern".into());
                    }
                    Part::Any
                }
                '*' => Part::Segment,
                '?' => Part::One,
                c if c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, '.' | '_' | '-' | '/') =>
                {
                    Part::Literal(c)
                }
                other => {
                    return Err(format!(
                        "`{other}` cannot appear in a repository name or pattern"
                    ));
                }
            });
        }
        Ok(Pattern {
            text: text.to_owned(),
            parts,
        })
    }

    /// Whether the whole of `name` matches (dynamic programming over pattern and name:
    /// time proportional to their product, whatever the pattern).
    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // reach[j]: the parts so far can match exactly the first j characters.
        let mut reach = vec![false; name.len() + 1];
        reach[0] = true;
        for part in &self.parts {
            let mut next = vec![false; name.len() + 1];
            match part {
                Part::Literal(c) => {
                    for j in 0..name.len() {
                        next[j + 1] = reach[j] && name[j] == *c;
                    }
                }
                Part::One => {
                    for j in 0..name.len() {
                        next[j + 1] = reach[j] && name[j] != '/';
                    }
                }
                Part::Segment | Part::Any => {
                    let crosses = *part == Part::Any;
                    next[0] = reach[0];
                    for j in 0..name.len() {
                        next[j + 1] = reach[j + 1] || (next[j] && (crosses || name[j] != '/'));
                    }
                }
            }
            reach = next;
        }
        reach[name.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_whole_names_with_star_within_a_segment() {
        let p = pattern("team-a/*");
        assert!(p.matches("team-a/app"));
        assert!(!p.matches("team-a/app/sub"));
        assert!(!p.matches("team-a"));
        assert!(!p.matches("team-ab/app"));
        let p = pattern("team-a/**");
        assert!(p.matches("team-a/app"));
        assert!(p.matches("team-a/app/sub"));
        assert!(!p.matches("team-b/app"));
        assert!(pattern("**").matches("anything/at/all"));
        assert!(pattern("*").matches("top"));
        assert!(!pattern("*").matches("a/b"));
        assert!(pattern("app-?").matches("app-1"));
        assert!(!pattern("app-?").matches("app-12"));
        assert!(!pattern("a?b").matches("a/b"));
        assert!(pattern("**/cache").matches("x/y/cache"));
        assert!(!pattern("**/cache").matches("x/y/cachex"));
        assert!(pattern("exact").matches("exact"));
        assert!(!pattern("exact").matches("exactly"));
        // Many stars against a long name that almost matches: quick, and no match.
        let hostile = pattern(&"*a".repeat(100));
        assert!(!hostile.matches(&"a".repeat(99)));
        for bad in ["", "UPPER", "a b", "***", "a\u{0}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    const POLICY: &str = r#"{
        "groups": { "team-a": { "users": ["alice", "bob"] } },
        "repositories": {
            "team-a/**": {
                "policies": [
                    { "groups": ["team-a"], "actions": ["pull", "push"] },
                    { "users": ["bob"], "actions": ["delete"] }
                ],
                "defaultPolicy": ["pull"]
            },
            "team-a/secret": { "policies": [{ "users": ["alice"], "actions": ["pull"] }] },
            "public/*": { "anonymousPolicy": ["pull"] }
        },
        "adminPolicy": { "users": ["root"], "actions": ["pull", "push", "delete"] }
    }"#;

    #[test]
    fn users_groups_anonymous_and_admins_get_what_the_longest_pattern_says() {
        let policy = AccessPolicy::from_json(POLICY, "t").unwrap();
        use Action::*;
        let cases = [
            (Some("alice"), "team-a/app", Pull, true),
            (Some("alice"), "team-a/app", Push, true),
            (Some("alice"), "team-a/app", Delete, false),
            (Some("bob"), "team-a/app/x", Delete, true),
            (Some("carol"), "team-a/app", Pull, true),
            (Some("carol"), "team-a/app", Push, false),
            (None, "team-a/app", Pull, false),
            // The longer pattern alone decides: bob's group rights stop at the secret.
            (Some("alice"), "team-a/secret", Pull, true),
            (Some("alice"), "team-a/secret", Push, false),
            (Some("bob"), "team-a/secret", Pull, false),
            (Some("carol"), "team-a/secret", Pull, false),
            (None, "public/app", Pull, true),
            (Some("carol"), "public/app", Pull, true),
            (Some("carol"), "public/app", Push, false),
            (None, "public/app/deeper", Pull, false),
            (Some("alice"), "elsewhere", Pull, false),
            (Some("root"), "elsewhere", Delete, true),
            (Some("root"), "team-a/secret", Push, true),
        ];
        for (user, repo, action, allowed) in cases {
            assert_eq!(
                policy.allows(user, repo, action),
                allowed,
                "{user:?} {action:?} {repo}"
            );
        }
        assert!(policy.allows_catalog(Some("root")));
        assert!(!policy.allows_catalog(Some("alice")));
        assert!(!policy.allows_catalog(None));
    }

    #[test]
    fn refuses_policies_it_cannot_honour_exactly() {
        for (text, reason) in [
            ("{", "EOF"),
            (r#"{"repos": {}}"#, "unknown field"),
            (
                r#"{"repositories": {"a": {"defaultPolicy": ["read"]}}}"#,
                "unknown action `read`",
            ),
            (
                r#"{"repositories": {"a": {"anonymousPolicy": ["push"]}}}"#,
                "pull only",
            ),
            (
                r#"{"repositories": {"a": {"policies": [{"groups": ["nope"], "actions": ["pull"]}]}}}"#,
                "group `nope` is not defined",
            ),
            (r#"{"repositories": {"A/*": {}}}"#, "`A` cannot appear"),
            (
                r#"{"adminPolicy": {"users": ["x"], "actions": ["all"]}}"#,
                "adminPolicy",
            ),
        ] {
            let err = AccessPolicy::from_json(text, "p.json").unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.contains("p.json") && shown.contains(reason),
                "{text}: {shown}"
            );
        }
    }

    #[test]
    fn requests_need_what_distribution_asks_for() {
        let route = |path: &str| crate::route::parse_path(path).ok().flatten();
        let none = Query::parse(None);
        let repo = |name: &str, actions: &[Action]| Need::Repository {
            name: name.into(),
            actions: actions.to_vec(),
        };
        use Action::*;
        assert!(needs(&Method::GET, route("/v2/").as_ref(), &none).is_empty());
        assert_eq!(
            needs(&Method::GET, route("/v2/_catalog").as_ref(), &none),
            [Need::Catalog]
        );
        assert_eq!(
            needs(&Method::HEAD, route("/v2/a/b/manifests/v1").as_ref(), &none),
            [repo("a/b", &[Pull])]
        );
        assert_eq!(
            needs(&Method::PUT, route("/v2/a/manifests/v1").as_ref(), &none),
            [repo("a", &[Pull, Push])]
        );
        assert_eq!(
            needs(
                &Method::DELETE,
                route("/v2/a/blobs/sha256:00").as_ref(),
                &none
            ),
            [repo("a", &[Delete])]
        );
        assert_eq!(
            needs(
                &Method::DELETE,
                route("/v2/a/blobs/uploads/x").as_ref(),
                &none
            ),
            [repo("a", &[Pull, Push])]
        );
        let mount = Query::parse(Some("mount=sha256:00&from=other/repo"));
        let scopes: Vec<String> = needs(
            &Method::POST,
            route("/v2/a/blobs/uploads/").as_ref(),
            &mount,
        )
        .iter()
        .map(Need::scope)
        .collect();
        assert_eq!(
            scopes,
            ["repository:a:pull,push", "repository:other/repo:pull"]
        );
        assert_eq!(Need::Catalog.scope(), "registry:catalog:*");
    }
}
