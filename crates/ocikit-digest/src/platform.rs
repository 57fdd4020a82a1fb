//! Platforms: parsing and formatting `os/arch[/variant]`, normalising the common aliases,
//! the host platform, and matching, over `oci-spec`'s [`Platform`].
//!
//! Names follow Go's `GOOS`/`GOARCH`, as the image spec asks. Normalisation follows
//! containerd's: `x86_64` is `amd64`, `aarch64` is `arm64`, `i386`/`i686` are `386`,
//! `armhf` is `arm/v7` and `armel` is `arm/v6`; a numeric ARM variant gains its `v` (`8` is
//! `v8`). For matching, a platform without a variant has its architecture's default one:
//! `arm64` is `arm64/v8`, `arm` is `arm/v7`, `amd64` is `amd64/v1`.
//!
//! ```
//! use ocikit_digest::platform;
//!
//! let want = platform::parse("linux/aarch64")?;
//! assert_eq!(platform::format(&want), "linux/arm64");
//! assert!(platform::matches(&want, &platform::parse("linux/arm64/v8")?));
//! assert!(!platform::matches(&want, &platform::parse("linux/amd64")?));
//! # Ok::<(), platform::InvalidPlatform>(())
//! ```

use oci_spec::image::{Arch, Os, Platform};

/// Parses `os[(os.version)]/arch[/variant]`, as `linux/amd64`, `linux/arm/v7` or
/// `windows(10.0.17763.1234)/amd64`, and normalises the result with [`normalize`] (so names
/// are lowercased and aliases resolved).
///
/// Each component is a letter or digit followed by any of `A-Za-z0-9_.-`.
pub fn parse(s: &str) -> Result<Platform, InvalidPlatform> {
    use PlatformErrorKind as K;
    if s.is_empty() {
        return Err(InvalidPlatform::new(K::Empty));
    }
    let mut components = Vec::new();
    let mut start = 0;
    for part in s.split('/') {
        components.push((start, part));
        start += part.len() + 1;
    }
    if components.len() < 2 {
        return Err(InvalidPlatform::new(K::MissingArchitecture));
    }
    if components.len() > 3 {
        return Err(InvalidPlatform::new(K::TooManyComponents));
    }
    let (os_offset, os_part) = components[0];
    let (os, os_version) = match os_part.find('(') {
        Some(open) => {
            let Some(inner) = os_part[open + 1..].strip_suffix(')') else {
                return Err(InvalidPlatform::new(K::UnclosedOsVersion));
            };
            check_component(0, os_offset, &os_part[..open])?;
            check_component(0, os_offset + open + 1, inner)?;
            (&os_part[..open], Some(inner))
        }
        None => {
            check_component(0, os_offset, os_part)?;
            (os_part, None)
        }
    };
    for (index, &(offset, part)) in components.iter().enumerate().skip(1) {
        check_component(index, offset, part)?;
    }
    let architecture = components[1].1;
    let variant = components.get(2).map(|&(_, v)| v);
    let mut platform = build(os, architecture, variant);
    platform.set_os_version(os_version.map(str::to_owned));
    Ok(normalize(&platform))
}

fn check_component(index: usize, offset: usize, part: &str) -> Result<(), InvalidPlatform> {
    if part.is_empty() {
        return Err(InvalidPlatform::new(PlatformErrorKind::EmptyComponent {
            index,
        }));
    }
    let bad = part.bytes().enumerate().position(|(i, b)| {
        !(b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'_' | b'.' | b'-')))
    });
    match bad {
        Some(i) => Err(InvalidPlatform::new(PlatformErrorKind::BadChar {
            position: offset + i,
        })),
        None => Ok(()),
    }
}

/// Builds a platform from its names, as given (not normalised).
pub fn build(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
    let mut platform = Platform::default();
    platform.set_os(Os::from(os));
    platform.set_architecture(arch(architecture));
    platform.set_os_version(None);
    platform.set_os_features(None);
    platform.set_variant(variant.map(str::to_owned));
    platform.set_features(None);
    platform
}

/// `Arch::from`, but `armbe` is 32-bit big-endian ARM: oci-spec reads it as `arm64be`.
fn arch(name: &str) -> Arch {
    match name {
        "armbe" => Arch::ARMbe,
        other => Arch::from(other),
    }
}

/// Formats a platform as `os[(os.version)]/arch[/variant]`, the inverse of [`parse`] for
/// normalised platforms.
pub fn format(platform: &Platform) -> String {
    let mut out = platform.os().to_string();
    if let Some(version) = platform.os_version() {
        out.push('(');
        out.push_str(version);
        out.push(')');
    }
    out.push('/');
    out.push_str(&platform.architecture().to_string());
    if let Some(variant) = platform.variant() {
        out.push('/');
        out.push_str(variant);
    }
    out
}

/// Normalises an OS name: lowercased, and `macos` is `darwin`.
pub fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "macos" | "osx" => "darwin".to_owned(),
        _ => os,
    }
}

/// Normalises an architecture and variant to Go's names (see the module documentation).
///
/// Names are lowercased; an alias that implies a variant (`armhf`, `armv7l`) supplies it when
/// none is given; `arm` and `arm64` variants written as bare numbers gain a `v`, and
/// `arm64`'s `v8.0` is `v8`.
pub fn normalize_arch(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    let (arch, implied) = match architecture.as_str() {
        "i386" | "i486" | "i586" | "i686" | "x86" | "386" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" | "armv8" | "armv8l" => ("arm64", None),
        "armhf" | "armv7" | "armv7l" => ("arm", Some("v7")),
        "armel" | "armv6" | "armv6l" => ("arm", Some("v6")),
        "armv5" | "armv5l" | "armv5tel" => ("arm", Some("v5")),
        "arm" => ("arm", None),
        "ppc64el" | "powerpc64le" => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "loongarch64" => ("loong64", None),
        "mips64el" => ("mips64le", None),
        "mipsel" => ("mipsle", None),
        _ => return (architecture, variant),
    };
    let variant = variant.or_else(|| implied.map(str::to_owned));
    let variant = match arch {
        "arm" | "arm64" => variant.map(|v| {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                format!("v{v}")
            } else if arch == "arm64" && v == "v8.0" {
                "v8".to_owned()
            } else {
                v
            }
        }),
        _ => variant,
    };
    (arch.to_owned(), variant)
}

/// The variant an architecture has when a platform names none: `v8` for `arm64`, `v7` for
/// `arm`, `v1` for `amd64`.
pub fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        "amd64" => Some("v1"),
        _ => None,
    }
}

/// A copy of `platform` with OS, architecture and variant normalised.
pub fn normalize(platform: &Platform) -> Platform {
    let os = normalize_os(&platform.os().to_string());
    let (architecture, variant) = normalize_arch(
        &platform.architecture().to_string(),
        platform.variant().as_deref(),
    );
    let mut out = platform.clone();
    out.set_os(Os::from(os.as_str()));
    out.set_architecture(arch(&architecture));
    out.set_variant(variant);
    out
}

/// The platform ocikit is running on, in Go's names (the variant only for 32-bit ARM built
/// for ARMv7).
pub fn current() -> Platform {
    let os = normalize_os(std::env::consts::OS);
    let big_endian = cfg!(target_endian = "big");
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", cfg!(target_feature = "v7").then_some("v7")),
        "powerpc64" if big_endian => ("ppc64", None),
        "powerpc64" => ("ppc64le", None),
        "powerpc" => ("ppc", None),
        "mips64" if big_endian => ("mips64", None),
        "mips64" => ("mips64le", None),
        "mips" if big_endian => ("mips", None),
        "mips" => ("mipsle", None),
        "loongarch64" => ("loong64", None),
        "wasm32" => ("wasm", None),
        other => (other, None),
    };
    build(&os, architecture, variant)
}

/// Whether a platform `have` (of an image) satisfies the wanted platform `want`.
///
/// Both are normalised. The OS and architecture must be equal, and `have` must name both
/// (an entry missing either never matches). A variant is compared only when `want` names
/// one, `have`'s defaulting per [`default_variant`]; an `os.version` likewise only when
/// `want` names one. There is no cross-variant compatibility (`arm/v7` does not match an
/// `arm/v6` image): this is exact matching, not a host-compatibility policy.
pub fn matches(want: &Platform, have: &Platform) -> bool {
    let want = normalize(want);
    let have = normalize(have);
    let have_os = have.os().to_string();
    let have_arch = have.architecture().to_string();
    if have_os.is_empty() || have_arch.is_empty() {
        return false;
    }
    if want.os().to_string() != have_os || want.architecture().to_string() != have_arch {
        return false;
    }
    if let Some(wanted) = want.variant() {
        let have_variant = have.variant().as_deref().or(default_variant(&have_arch));
        if have_variant != Some(wanted.as_str()) {
            return false;
        }
    }
    match want.os_version() {
        Some(wanted) => have.os_version().as_deref() == Some(wanted.as_str()),
        None => true,
    }
}

/// Why a platform string was rejected by [`parse`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform: {kind}")]
pub struct InvalidPlatform {
    kind: PlatformErrorKind,
}

impl InvalidPlatform {
    fn new(kind: PlatformErrorKind) -> InvalidPlatform {
        InvalidPlatform { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &PlatformErrorKind {
        &self.kind
    }
}

/// The precise reason a platform string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformErrorKind {
    /// The string is empty.
    #[error("platform is empty")]
    Empty,
    /// There is no `/arch`.
    #[error("platform has no architecture (expected os/arch[/variant])")]
    MissingArchitecture,
    /// More than three `/`-separated components.
    #[error("platform has more than three components (expected os/arch[/variant])")]
    TooManyComponents,
    /// A component (or the OS version) is empty.
    #[error("platform component {index} is empty")]
    EmptyComponent {
        /// 0 for the OS, 1 for the architecture, 2 for the variant.
        index: usize,
    },
    /// A character outside `A-Za-z0-9_.-`, or a component starting with `_`, `.` or `-`.
    #[error(
        "invalid character at byte {position} in platform (allowed: A-Z a-z 0-9, and _ . - after the first)"
    )]
    BadChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// An `os(` without its closing `)` right before the `/`.
    #[error("platform OS version is not closed by `)`")]
    UnclosedOsVersion,
}
