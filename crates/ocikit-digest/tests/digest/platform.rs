//! Platform parsing, normalisation, the host platform and matching.

use oci_spec::image::{Arch, Os, Platform};
use ocikit_digest::platform::{self, PlatformErrorKind, build, format, matches, parse};

fn err(s: &str) -> PlatformErrorKind {
    parse(s).expect_err(s).kind().clone()
}

fn p(s: &str) -> Platform {
    parse(s).unwrap()
}

#[test]
fn parses_os_arch_and_variant() {
    let linux = p("linux/amd64");
    assert_eq!(linux.os(), &Os::Linux);
    assert_eq!(linux.architecture(), &Arch::Amd64);
    assert_eq!(linux.variant(), &None);
    assert_eq!(linux.os_version(), &None);

    let arm = p("linux/arm/v7");
    assert_eq!(arm.architecture(), &Arch::ARM);
    assert_eq!(arm.variant().as_deref(), Some("v7"));

    let windows = p("windows(10.0.17763.1234)/amd64");
    assert_eq!(windows.os(), &Os::Windows);
    assert_eq!(windows.os_version().as_deref(), Some("10.0.17763.1234"));
    assert_eq!(format(&windows), "windows(10.0.17763.1234)/amd64");

    assert_eq!(p("freebsd/riscv64").os(), &Os::FreeBSD);
    assert_eq!(format(&p("plan9/mips64le")), "plan9/mips64le");
    assert_eq!(format(&p("someos/somearch/x1")), "someos/somearch/x1");
}

#[test]
fn parse_normalises_aliases() {
    for (input, expected) in [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm64/v8.0", "linux/arm64/v8"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/armv7l", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/V6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("linux/ppc64el", "linux/ppc64le"),
        ("linux/loongarch64", "linux/loong64"),
        ("macos/arm64", "darwin/arm64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
    ] {
        assert_eq!(format(&p(input)), expected, "{input}");
        // Formatting a parsed platform and parsing it again changes nothing.
        assert_eq!(p(&format(&p(input))), p(input));
    }
}

#[test]
fn normalize_arch_table() {
    let n = |a: &str, v: Option<&str>| platform::normalize_arch(a, v);
    assert_eq!(n("x86_64", None), ("amd64".into(), None));
    assert_eq!(n("aarch64", Some("8")), ("arm64".into(), Some("v8".into())));
    assert_eq!(n("armhf", None), ("arm".into(), Some("v7".into())));
    assert_eq!(
        n("armhf", Some("v6")),
        ("arm".into(), Some("v6".into())),
        "an explicit variant wins"
    );
    assert_eq!(n("armel", None), ("arm".into(), Some("v6".into())));
    assert_eq!(n("i686", None), ("386".into(), None));
    assert_eq!(n("s390x", None), ("s390x".into(), None));
    assert_eq!(n("RISCV64", None), ("riscv64".into(), None));
    assert_eq!(
        n("amd64", Some("8")),
        ("amd64".into(), Some("8".into())),
        "only ARM variants gain a v"
    );
    assert_eq!(platform::normalize_os("MacOS"), "darwin");
    assert_eq!(platform::normalize_os("Windows"), "windows");
    assert_eq!(platform::default_variant("arm64"), Some("v8"));
    assert_eq!(platform::default_variant("arm"), Some("v7"));
    assert_eq!(platform::default_variant("amd64"), Some("v1"));
    assert_eq!(platform::default_variant("s390x"), None);
}

#[test]
fn parse_errors() {
    assert_eq!(err(""), PlatformErrorKind::Empty);
    assert_eq!(err("linux"), PlatformErrorKind::MissingArchitecture);
    assert_eq!(err("linux/arm/v7/x"), PlatformErrorKind::TooManyComponents);
    assert_eq!(
        err("linux/"),
        PlatformErrorKind::EmptyComponent { index: 1 }
    );
    assert_eq!(
        err("/amd64"),
        PlatformErrorKind::EmptyComponent { index: 0 }
    );
    assert_eq!(
        err("linux/arm/"),
        PlatformErrorKind::EmptyComponent { index: 2 }
    );
    assert_eq!(
        err("linux/amd 64"),
        PlatformErrorKind::BadChar { position: 9 }
    );
    assert_eq!(
        err("linux/arm/v7\n"),
        PlatformErrorKind::BadChar { position: 12 }
    );
    assert_eq!(
        err("li:nux/amd64"),
        PlatformErrorKind::BadChar { position: 2 }
    );
    assert_eq!(
        err("windows(10/amd64"),
        PlatformErrorKind::UnclosedOsVersion
    );
    assert_eq!(
        err("windows()/amd64"),
        PlatformErrorKind::EmptyComponent { index: 0 }
    );
    assert_eq!(
        err("(1)/amd64"),
        PlatformErrorKind::EmptyComponent { index: 0 }
    );
    assert_eq!(
        err("windows(1 0)/amd64"),
        PlatformErrorKind::BadChar { position: 9 }
    );
    assert_eq!(
        err("windows(1)x/amd64"),
        PlatformErrorKind::UnclosedOsVersion
    );
    assert_eq!(
        err("linux/../amd64"),
        PlatformErrorKind::BadChar { position: 6 }
    );
    assert_eq!(err("linux/-x"), PlatformErrorKind::BadChar { position: 6 });
    assert!(parse("linux/a_b.c-d/v_1").is_ok());
}

#[test]
fn arm64_is_arm64_v8() {
    assert!(matches(&p("linux/arm64"), &p("linux/arm64/v8")));
    assert!(matches(&p("linux/arm64/v8"), &p("linux/arm64")));
    assert!(matches(&p("linux/aarch64"), &p("linux/arm64/v8")));
    assert!(!matches(&p("linux/arm64/v8"), &p("linux/arm64/v9")));
    // No wanted variant: any variant.
    assert!(matches(&p("linux/arm64"), &p("linux/arm64/v9")));
    assert!(matches(&p("linux/arm"), &p("linux/arm/v6")));
}

#[test]
fn matching() {
    assert!(matches(&p("linux/amd64"), &p("linux/amd64")));
    assert!(matches(&p("linux/x86_64"), &p("linux/amd64")));
    assert!(!matches(&p("linux/amd64"), &p("windows/amd64")));
    assert!(!matches(&p("linux/amd64"), &p("linux/arm64")));
    assert!(
        matches(&p("linux/arm/v7"), &p("linux/arm")),
        "arm defaults to v7"
    );
    assert!(!matches(&p("linux/arm/v6"), &p("linux/arm")));
    assert!(!matches(&p("linux/arm/v7"), &p("linux/arm/v6")));
    assert!(matches(&p("linux/amd64/v1"), &p("linux/amd64")));
    assert!(!matches(&p("linux/amd64/v3"), &p("linux/amd64")));
    // Unnormalised platforms (as read from an index) are normalised before comparing.
    assert!(matches(&p("linux/arm/v7"), &build("linux", "armhf", None)));
    assert!(matches(
        &p("linux/arm64"),
        &build("Linux", "aarch64", Some("8"))
    ));
    // os.version only matters when wanted.
    let win = p("windows(10.0.17763)/amd64");
    assert!(matches(&p("windows/amd64"), &win));
    assert!(matches(&win, &win));
    assert!(!matches(&win, &p("windows(10.0.20348)/amd64")));
    assert!(!matches(&win, &p("windows/amd64")));
}

// SPEC C-J11: an entry missing os or architecture never matches.
#[test]
fn entries_without_os_or_architecture_never_match() {
    let no_os = build("", "amd64", None);
    let no_arch = build("linux", "", None);
    assert!(!matches(&p("linux/amd64"), &no_os));
    assert!(!matches(&p("linux/amd64"), &no_arch));
    assert!(!matches(&no_os, &no_os));
}

#[test]
fn current_platform_uses_go_names() {
    let here = platform::current();
    let arch = here.architecture().to_string();
    let os = here.os().to_string();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(arch, "amd64");
    }
    if cfg!(target_arch = "aarch64") {
        assert_eq!(arch, "arm64");
    }
    if cfg!(target_os = "linux") {
        assert_eq!(os, "linux");
    }
    if cfg!(target_os = "macos") {
        assert_eq!(os, "darwin");
    }
    assert!(!arch.contains('_'), "{arch}");
    assert!(matches(&here, &here));
    assert_eq!(p(&format(&here)), platform::normalize(&here));
    // oci-spec's own default agrees on the architecture.
    assert_eq!(here.architecture(), Platform::default().architecture());
}

#[test]
fn format_and_error_display() {
    assert_eq!(format(&build("linux", "arm", Some("v7"))), "linux/arm/v7");
    let message = parse("linux").unwrap_err().to_string();
    assert!(message.contains("architecture"), "{message}");
}

/// oci-spec reads the architecture name `armbe` as `arm64be` (found by the `platform_parse`
/// fuzz target, `fuzz/artifacts/platform_parse/`): a platform asked for as `linux/armbe`
/// must stay 32-bit big-endian ARM, and not match `arm64be` images.
#[test]
fn armbe_is_not_arm64be() {
    let armbe = p("linux/armbe");
    assert_eq!(armbe.architecture(), &Arch::ARMbe);
    assert_eq!(format(&armbe), "linux/armbe");
    assert_eq!(format(&build("linux", "armbe", None)), "linux/armbe");
    assert!(!matches(&armbe, &p("linux/arm64be")));
    assert_eq!(p("linux/arm64be").architecture(), &Arch::ARM64be);
}
