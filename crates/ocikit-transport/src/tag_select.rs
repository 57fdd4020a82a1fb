//! Which tags of a repository to act on, and in what order: [`TagSelection`] (an explicit
//! list, a regex filter, a semver range, the newest N versions) and [`TagOrder`] (the
//! registry's order, or semver). `ocikit tags --filter --sort` and `ocikit sync`'s sources
//! are this module.
//!
//! # Versions
//!
//! Tags are read as versions leniently ([`parse_version`]): an optional `v`/`V`, one to
//! three dot-separated numbers (`1`, `1.2`, `1.2.3`; missing parts are 0, leading zeros are
//! read as decimal), then optionally `-PRERELEASE` and `+BUILD` as semver writes them
//! (`v1.2.3-rc.1`, `3.19-alpine`, which is a pre-release of 3.19.0 to semver). Anything else
//! (`latest`, `main`, `1.2.3.4`, `sha-abc`) is not a version.
//!
//! # Order
//!
//! [`compare_tags`] is a total order: tags that are not versions come first, by byte order
//! among themselves, then versions by semver precedence (pre-releases before their release);
//! two tags that read as the same version (`1.2` and `1.2.0`, `v1` and `1`) are ordered by
//! their bytes. So an ascending sort ends with the newest version, a descending one lists the
//! non-version tags last, and [`TagSelection::newest`] and [`TagSelection::range`] never
//! pick a tag that is not a version.

use std::cmp::Ordering;
use std::collections::HashSet;

use regex::{Regex, RegexBuilder};
use semver::{BuildMetadata, Prerelease, Version, VersionReq};

/// The largest compiled size of a tag filter: a pattern past it is refused
/// ([`TagSelectionErrorKind::Regex`]), not compiled at any cost.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The order tags are listed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagOrder {
    /// As given (for `ocikit tags`, as the registry lists them).
    #[default]
    Given,
    /// Ascending by [`compare_tags`]: tags that are not versions first, the newest version
    /// last.
    Semver,
    /// Descending by [`compare_tags`]: the newest version first, tags that are not versions
    /// last.
    SemverDescending,
}

/// Why a tag selection was refused.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TagSelectionError {
    kind: TagSelectionErrorKind,
}

impl TagSelectionError {
    /// What exactly was wrong.
    pub fn kind(&self) -> &TagSelectionErrorKind {
        &self.kind
    }
}

/// What was wrong with a tag selection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TagSelectionErrorKind {
    /// A tag filter that does not compile.
    #[error("the tag filter `{regex}` is not a valid regex")]
    Regex {
        /// The pattern given.
        regex: String,
        /// Why it was refused.
        #[source]
        source: regex::Error,
    },
    /// A semver range that does not parse.
    #[error("`{range}` is not a semver range (like `>=1.2, <2`)")]
    Range {
        /// The range given.
        range: String,
        /// Why it was refused.
        #[source]
        source: semver::Error,
    },
}

impl From<TagSelectionErrorKind> for TagSelectionError {
    fn from(kind: TagSelectionErrorKind) -> TagSelectionError {
        TagSelectionError { kind }
    }
}

/// Which tags of a repository to act on: all of them unless narrowed by an explicit list
/// ([`TagSelection::tags`]), a regex ([`TagSelection::filter`]), a semver range
/// ([`TagSelection::range`]) or the newest N versions ([`TagSelection::newest`]). The
/// narrowings combine: a tag is selected when it passes every one given (the newest N are
/// counted among the tags the others let through). [`TagSelection::select`] applies it to
/// the tags a repository has.
///
/// ```
/// use ocikit_transport::{TagOrder, TagSelection};
///
/// let available: Vec<String> = ["latest", "v1.9.0", "1.10", "v2.0.0-rc.1", "2.0.0", "1.2"]
///     .map(String::from)
///     .to_vec();
/// let newest = TagSelection::all().range(">=1.2, <2")?.newest(2).order(TagOrder::Semver);
/// assert_eq!(newest.select(&available), ["v1.9.0", "1.10"]);
/// let filtered = TagSelection::all().filter(r"^v")?;
/// assert_eq!(filtered.select(&available), ["v1.9.0", "v2.0.0-rc.1"]);
/// # Ok::<(), ocikit_transport::TagSelectionError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TagSelection {
    tags: Option<Vec<String>>,
    filter: Option<Regex>,
    range: Option<(String, VersionReq)>,
    newest: Option<usize>,
    order: TagOrder,
}

impl TagSelection {
    /// Every tag, in the order given.
    pub fn all() -> TagSelection {
        TagSelection::default()
    }

    /// Only these tags (those the repository has: [`TagSelection::missing`] names the
    /// others).
    pub fn tags<I, S>(mut self, tags: I) -> TagSelection
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Only tags the regex `pattern` matches somewhere (Rust `regex` syntax, unanchored as
    /// skopeo's `images-by-tag-regex`: anchor with `^…$` to match whole tags). A pattern
    /// that does not compile is [`TagSelectionErrorKind::Regex`].
    pub fn filter(mut self, pattern: &str) -> Result<TagSelection, TagSelectionError> {
        let regex = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|source| TagSelectionErrorKind::Regex {
                regex: pattern.to_string(),
                source,
            })?;
        self.filter = Some(regex);
        Ok(self)
    }

    /// Only tags that read as versions ([`parse_version`]) in the semver range `range`
    /// (cargo's syntax: `>=1.2, <2`, `~1.4`, `^2`, `*`; a bare `1.2` means `^1.2`;
    /// pre-releases match only a comparator that names a pre-release of the same
    /// `major.minor.patch`). A range that does not parse is
    /// [`TagSelectionErrorKind::Range`].
    pub fn range(mut self, range: &str) -> Result<TagSelection, TagSelectionError> {
        let req = VersionReq::parse(range).map_err(|source| TagSelectionErrorKind::Range {
            range: range.to_string(),
            source,
        })?;
        self.range = Some((range.to_string(), req));
        Ok(self)
    }

    /// Only the `n` newest versions (by [`compare_tags`]) among the tags the other
    /// narrowings let through; tags that are not versions are left out. Pre-releases count
    /// as versions: add the range `*` to leave them out.
    pub fn newest(mut self, n: usize) -> TagSelection {
        self.newest = Some(n);
        self
    }

    /// The order [`TagSelection::select`] lists the selected tags in.
    pub fn order(mut self, order: TagOrder) -> TagSelection {
        self.order = order;
        self
    }

    /// The explicit list of tags, when one was given ([`TagSelection::tags`]).
    pub fn explicit_tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }

    /// The tag filter's pattern, when one was given.
    pub fn filter_pattern(&self) -> Option<&str> {
        self.filter.as_ref().map(Regex::as_str)
    }

    /// The semver range as given, when one was.
    pub fn range_text(&self) -> Option<&str> {
        self.range.as_ref().map(|(text, _)| text.as_str())
    }

    /// How many newest versions, when a count was given.
    pub fn newest_count(&self) -> Option<usize> {
        self.newest
    }

    /// The order of [`TagSelection::select`]'s answer.
    pub fn tag_order(&self) -> TagOrder {
        self.order
    }

    /// Whether every tag is selected (nothing narrows the selection).
    pub fn is_all(&self) -> bool {
        self.tags.is_none()
            && self.filter.is_none()
            && self.range.is_none()
            && self.newest.is_none()
    }

    /// Whether `tag` passes the explicit list, the filter and the range (not the newest N,
    /// which depends on the other tags).
    pub fn accepts(&self, tag: &str) -> bool {
        if let Some(tags) = &self.tags
            && !tags.iter().any(|t| t == tag)
        {
            return false;
        }
        if let Some(regex) = &self.filter
            && !regex.is_match(tag)
        {
            return false;
        }
        if let Some((_, req)) = &self.range {
            match parse_version(tag) {
                Some(version) if req.matches(&version) => {}
                _ => return false,
            }
        }
        true
    }

    /// The tags of `available` this selection picks, each once, in its order
    /// ([`TagOrder::Given`]: as in `available`).
    pub fn select(&self, available: &[String]) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut chosen: Vec<&String> = available
            .iter()
            .filter(|tag| self.accepts(tag) && seen.insert(tag.as_str()))
            .collect();
        if let Some(n) = self.newest {
            let mut versions: Vec<SortKey> = chosen
                .iter()
                .map(|tag| SortKey::of(tag))
                .filter(|key| key.version.is_some())
                .collect();
            versions.sort_by(|a, b| b.cmp(a));
            versions.truncate(n);
            let keep: HashSet<String> = versions.into_iter().map(|key| key.tag).collect();
            chosen.retain(|tag| keep.contains(tag.as_str()));
        }
        let mut chosen: Vec<String> = chosen.into_iter().cloned().collect();
        sort_tags(&mut chosen, self.order);
        chosen
    }

    /// The tags of the explicit list ([`TagSelection::tags`]) that `available` does not
    /// have, in the list's order; empty without a list.
    pub fn missing(&self, available: &[String]) -> Vec<String> {
        let have: HashSet<&str> = available.iter().map(String::as_str).collect();
        self.tags
            .iter()
            .flatten()
            .filter(|tag| !have.contains(tag.as_str()))
            .cloned()
            .collect()
    }
}

/// `tag` read as a version, leniently (see the [module docs](self)): `v1.2.3`, `1.2`, `1`,
/// `1.2.3-rc.1`, `3.19-alpine`; `None` for a tag that is not one.
pub fn parse_version(tag: &str) -> Option<Version> {
    let rest = tag
        .strip_prefix('v')
        .or_else(|| tag.strip_prefix('V'))
        .unwrap_or(tag);
    let (rest, build) = match rest.split_once('+') {
        Some((rest, build)) if !build.is_empty() => (rest, BuildMetadata::new(build).ok()?),
        Some(_) => return None,
        None => (rest, BuildMetadata::EMPTY),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, Prerelease::new(pre).ok()?),
        Some(_) => return None,
        None => (rest, Prerelease::EMPTY),
    };
    let mut numbers = [0u64; 3];
    for (i, part) in core.split('.').enumerate() {
        if i == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        numbers[i] = part.parse().ok()?;
    }
    let [major, minor, patch] = numbers;
    Some(Version {
        major,
        minor,
        patch,
        pre,
        build,
    })
}

/// The total order of tags by version (see the [module docs](self)): tags that are not
/// versions first, by bytes; then versions by semver precedence; ties by bytes.
pub fn compare_tags(a: &str, b: &str) -> Ordering {
    SortKey::of(a).cmp(&SortKey::of(b))
}

/// Sorts `tags` in `order` ([`TagOrder::Given`] leaves them as they are).
pub fn sort_tags(tags: &mut [String], order: TagOrder) {
    match order {
        TagOrder::Given => {}
        TagOrder::Semver => tags.sort_by_cached_key(|tag| SortKey::of(tag)),
        TagOrder::SemverDescending => {
            tags.sort_by_cached_key(|tag| std::cmp::Reverse(SortKey::of(tag)))
        }
    }
}

/// [`compare_tags`] as a key, each tag parsed once.
#[derive(PartialEq, Eq)]
struct SortKey {
    version: Option<Version>,
    tag: String,
}

impl SortKey {
    fn of(tag: &str) -> SortKey {
        SortKey {
            version: parse_version(tag),
            tag: tag.to_string(),
        }
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &SortKey) -> Ordering {
        let by_version = match (&self.version, &other.version) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp_precedence(b),
        };
        by_version.then_with(|| self.tag.cmp(&other.tag))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &SortKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_are_read_leniently() {
        assert_eq!(parse_version("v1.2.3"), Some(v("1.2.3")));
        assert_eq!(parse_version("V1.2.3"), Some(v("1.2.3")));
        assert_eq!(parse_version("1.2"), Some(v("1.2.0")));
        assert_eq!(parse_version("7"), Some(v("7.0.0")));
        assert_eq!(parse_version("1.02.3"), Some(v("1.2.3")));
        assert_eq!(parse_version("v2.0.0-rc.1"), Some(v("2.0.0-rc.1")));
        assert_eq!(parse_version("3.19-alpine"), Some(v("3.19.0-alpine")));
        assert_eq!(parse_version("1.2.3+build.5"), Some(v("1.2.3+build.5")));
        for not in [
            "latest",
            "main",
            "",
            "v",
            "1.",
            ".1",
            "1..2",
            "1.2.3.4",
            "1.2-",
            "1.2+",
            "1.2.3-01",
            "v-1",
            "1.x",
            "sha-abc",
            "1.2.3-rc..1",
            "+1",
        ] {
            assert_eq!(parse_version(not), None, "{not:?}");
        }
    }

    #[test]
    fn semver_order_puts_other_tags_first_and_breaks_ties_by_bytes() {
        let mut tags = strings(&[
            "v1.10.0",
            "latest",
            "1.2",
            "v1.2.0",
            "1.9",
            "2.0.0-rc.1",
            "2.0.0",
            "edge",
            "1.2.0",
        ]);
        sort_tags(&mut tags, TagOrder::Semver);
        assert_eq!(
            tags,
            strings(&[
                "edge",
                "latest",
                "1.2",
                "1.2.0",
                "v1.2.0",
                "1.9",
                "v1.10.0",
                "2.0.0-rc.1",
                "2.0.0"
            ])
        );
        sort_tags(&mut tags, TagOrder::SemverDescending);
        assert_eq!(
            tags,
            strings(&[
                "2.0.0",
                "2.0.0-rc.1",
                "v1.10.0",
                "1.9",
                "v1.2.0",
                "1.2.0",
                "1.2",
                "latest",
                "edge"
            ])
        );
        let mut given = strings(&["b", "1.0", "a"]);
        sort_tags(&mut given, TagOrder::Given);
        assert_eq!(given, strings(&["b", "1.0", "a"]));
    }

    #[test]
    fn filter_range_newest_and_list_narrow_together() {
        let available = strings(&[
            "latest",
            "v1.1.0",
            "v1.2.0",
            "1.3",
            "v1.10.1",
            "2.0.0-rc.1",
            "2.0.0",
            "1.3-debug",
        ]);
        let filter = TagSelection::all().filter(r"^v1\.").unwrap();
        assert_eq!(filter.select(&available), ["v1.1.0", "v1.2.0", "v1.10.1"]);
        let range = TagSelection::all().range(">=1.2, <2").unwrap();
        assert_eq!(range.select(&available), ["v1.2.0", "1.3", "v1.10.1"]);
        // Pre-releases are versions too (a range leaves them out, as below).
        let newest = TagSelection::all().newest(2);
        assert_eq!(newest.select(&available), ["2.0.0-rc.1", "2.0.0"]);
        let newest = TagSelection::all().newest(3).range("*").unwrap();
        assert_eq!(newest.select(&available), ["1.3", "v1.10.1", "2.0.0"]);
        let both = TagSelection::all()
            .range("<2")
            .unwrap()
            .newest(2)
            .order(TagOrder::SemverDescending);
        assert_eq!(both.select(&available), ["v1.10.1", "1.3"]);
        let list = TagSelection::all().tags(["2.0.0", "gone", "latest"]);
        assert_eq!(list.select(&available), ["latest", "2.0.0"]);
        assert_eq!(list.missing(&available), ["gone"]);
        assert_eq!(
            list.explicit_tags(),
            Some(&strings(&["2.0.0", "gone", "latest"])[..])
        );
        assert!(TagSelection::all().missing(&available).is_empty());
        assert!(TagSelection::all().is_all());
        assert!(!newest.is_all());
        assert_eq!(TagSelection::all().select(&available), available);
        assert!(TagSelection::all().newest(0).select(&available).is_empty());
    }

    #[test]
    fn a_bad_regex_or_range_is_refused_by_name() {
        let err = TagSelection::all().filter("v1.(").unwrap_err();
        assert!(
            matches!(err.kind(), TagSelectionErrorKind::Regex { regex, .. } if regex == "v1.(")
        );
        assert!(err.to_string().contains("`v1.(`"), "{err}");
        let err = TagSelection::all().range(">=1.2, <<2").unwrap_err();
        assert!(
            matches!(err.kind(), TagSelectionErrorKind::Range { range, .. } if range == ">=1.2, <<2")
        );
        assert!(err.to_string().contains("`>=1.2, <<2`"), "{err}");
        assert!(matches!(
            TagSelection::all().range("latest").unwrap_err().kind(),
            TagSelectionErrorKind::Range { .. }
        ));
        // A pattern that compiles past the size limit is refused, not built.
        assert!(matches!(
            TagSelection::all()
                .filter(r"\w{1000}\w{1000}")
                .unwrap_err()
                .kind(),
            TagSelectionErrorKind::Regex { .. }
        ));
    }

    fn tag() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,6}",
            (0u64..20, 0u64..20, 0u64..20).prop_map(|(a, b, c)| format!("v{a}.{b}.{c}")),
            (0u64..20, 0u64..20).prop_map(|(a, b)| format!("{a}.{b}")),
            (0u64..5, "[a-z]{1,3}").prop_map(|(a, p)| format!("{a}.0.0-{p}")),
        ]
    }

    proptest! {
        #[test]
        fn numeric_tags_read_as_their_numbers(a in 0u64..1_000_000, b in 0u64..1000, c in 0u64..1000, prefix in prop::bool::ANY) {
            let tag = format!("{}{a}.{b}.{c}", if prefix { "v" } else { "" });
            prop_assert_eq!(parse_version(&tag), Some(Version::new(a, b, c)));
            prop_assert_eq!(parse_version(&format!("{a}.{b}")), Some(Version::new(a, b, 0)));
        }

        #[test]
        fn the_semver_order_is_total_and_ignores_input_order(mut tags in prop::collection::vec(tag(), 0..20)) {
            let mut sorted = tags.clone();
            sort_tags(&mut sorted, TagOrder::Semver);
            for pair in sorted.windows(2) {
                prop_assert_ne!(compare_tags(&pair[0], &pair[1]), Ordering::Greater);
                prop_assert_eq!(compare_tags(&pair[1], &pair[0]), compare_tags(&pair[0], &pair[1]).reverse());
            }
            tags.reverse();
            sort_tags(&mut tags, TagOrder::Semver);
            prop_assert_eq!(&tags, &sorted);
            let mut descending = sorted.clone();
            sort_tags(&mut descending, TagOrder::SemverDescending);
            descending.reverse();
            prop_assert_eq!(descending, sorted);
        }

        #[test]
        fn newest_n_is_the_top_of_the_semver_order(tags in prop::collection::hash_set(tag(), 0..20), n in 0usize..8) {
            let tags: Vec<String> = tags.into_iter().collect();
            let chosen = TagSelection::all().newest(n).order(TagOrder::Semver).select(&tags);
            let mut versions: Vec<String> = tags.iter().filter(|t| parse_version(t).is_some()).cloned().collect();
            sort_tags(&mut versions, TagOrder::Semver);
            let top = versions[versions.len().saturating_sub(n)..].to_vec();
            prop_assert_eq!(chosen, top);
        }
    }
}
