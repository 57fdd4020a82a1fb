//! The charts of `docs/benchmarks.md`: one horizontal bar chart per comparison, drawn as SVG
//! by plotters from the figures in the section's table (so a chart never shows a number the
//! table does not), with the headline ratios and their goals above the bars and the
//! section's machine line below them.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Line, line};
use crate::{Result, root};

/// A headline ratio shown above a chart's bars, with its goal (a lower bound) if it has one.
struct Ratio {
    label: &'static str,
    case: &'static str,
    goal: Option<f64>,
}

/// One chart: which section's table it reads, and which rows become bars.
struct Chart {
    section: &'static str,
    /// File name under `docs/bench/`.
    file: &'static str,
    title: &'static str,
    /// `(label, case)`: a bar per row of the table; labels starting with `ocikit` are ours.
    bars: &'static [(&'static str, &'static str)],
    ratios: &'static [Ratio],
}

const fn goal(label: &'static str, case: &'static str, goal: f64) -> Ratio {
    Ratio {
        label,
        case,
        goal: Some(goal),
    }
}

const fn reported(label: &'static str, case: &'static str) -> Ratio {
    Ratio {
        label,
        case,
        goal: None,
    }
}

const CHARTS: &[Chart] = &[
    Chart {
        section: "digest",
        file: "digest.svg",
        title: "SHA-256 on one core",
        bars: &[
            ("ocikit Hasher", "sha256/ocikit-hasher"),
            ("ocikit VerifyingReader", "sha256/ocikit-verifying-reader"),
            ("sha2 (raw)", "sha256/sha2-raw"),
            ("ring (raw)", "sha256/ring-raw"),
            ("openssl speed", "sha256/openssl-speed-evp-1MiB-blocks"),
        ],
        ratios: &[],
    },
    Chart {
        section: "store",
        file: "store.svg",
        title: "Ingest of 1 GiB into the filesystem store",
        bars: &[
            ("ocikit FsStore ingest", "ocikit/fs-store-ingest"),
            ("cp + sync + sha256sum", "coreutils/cp+sync+sha256sum"),
            ("limit: durable write", "limit/durable-write"),
            ("limit: SHA-256 in memory", "limit/sha256-in-memory"),
        ],
        ratios: &[goal(
            "ingest / slower limit",
            "ratio/ingest-vs-slower-limit",
            0.9,
        )],
    },
    Chart {
        section: "codec-layer",
        file: "codec-layer-gzip.svg",
        title: "gzip level 6 layer from a ~500 MiB tree",
        bars: &[
            ("ocikit LayerWriter (tree)", "gzip6/ocikit-layerwriter-tree"),
            ("ocidir 0.8 (tree)", "ocidir/gzip6-tree"),
            (
                "ocikit LayerWriter (in-memory tar)",
                "gzip6/ocikit-layerwriter-mem",
            ),
            ("ocidir 0.8 (in-memory tar)", "ocidir/gzip6-mem"),
        ],
        ratios: &[goal(
            "ocikit / ocidir (tree)",
            "gzip6/ocikit-vs-ocidir-speed-tree",
            3.5,
        )],
    },
    Chart {
        section: "codec-layer",
        file: "codec-layer-zstd.svg",
        title: "zstd level 3 layer from a ~500 MiB tree",
        bars: &[
            ("ocikit LayerWriter (tree)", "zstd3/ocikit-layerwriter-tree"),
            ("ocidir 0.8 (tree)", "ocidir/zstd3-tree"),
            (
                "ocikit LayerWriter (in-memory tar)",
                "zstd3/ocikit-layerwriter-mem",
            ),
            ("ocidir 0.8 (in-memory tar)", "ocidir/zstd3-mem"),
        ],
        ratios: &[goal(
            "ocikit / ocidir (tree)",
            "zstd3/ocikit-vs-ocidir-speed-tree",
            1.1,
        )],
    },
    Chart {
        section: "codec-apply",
        file: "codec-apply.svg",
        title: "Applying a ~500 MiB layer into tmpfs",
        bars: &[
            ("ocikit (gzip)", "gz/ocikit-rate"),
            ("GNU tar -xzf", "gz/gnu-tar-xzf-rate"),
            ("ocikit (plain tar)", "plain/ocikit-rate"),
            ("GNU tar -xf", "plain/gnu-tar-xf-rate"),
        ],
        ratios: &[
            goal("ocikit / GNU tar (gzip)", "gz/speedup-vs-gnu-tar", 2.0),
            reported("ocikit / GNU tar (plain)", "plain/speedup-vs-gnu-tar"),
        ],
    },
    Chart {
        section: "layout",
        file: "layout-fsck.svg",
        title: "fsck of a ~1 GiB layout (480 layers)",
        bars: &[
            ("ocikit fsck", "fsck-large/ocikit"),
            ("ocidir 0.8 fsck", "fsck-large/ocidir"),
        ],
        ratios: &[goal("ocikit / ocidir", "fsck-large/ocikit-vs-ocidir", 1.7)],
    },
    Chart {
        section: "layout",
        file: "layout-fsck-small.svg",
        title: "fsck of 8,000 small blobs",
        bars: &[
            ("ocikit fsck", "fsck-small/ocikit-blobs"),
            ("ocidir 0.8 fsck", "fsck-small/ocidir-blobs"),
        ],
        ratios: &[reported("ocikit / ocidir", "fsck-small/ocikit-vs-ocidir")],
    },
    Chart {
        section: "layout",
        file: "layout-referrers.svg",
        title: "Referrers of one subject among 10,000 manifests (lower is better)",
        bars: &[
            ("ocikit (index in sync)", "referrers/ocikit-in-sync"),
            (
                "ocidir 0.8 find_referrers",
                "referrers/ocidir-find-referrers",
            ),
        ],
        ratios: &[goal(
            "ocikit speed-up over ocidir",
            "referrers/ocikit-vs-ocidir",
            100.0,
        )],
    },
    Chart {
        section: "registry",
        file: "registry-blobs.svg",
        title: "Registry server: push and pull of a 500 MiB blob",
        bars: &[
            ("ocikit push (monolithic)", "push-monolithic/ocikit"),
            (
                "distribution push (monolithic)",
                "push-monolithic/distribution",
            ),
            ("ocikit push (chunked)", "push-chunked/ocikit"),
            ("distribution push (chunked)", "push-chunked/distribution"),
            ("ocikit pull", "pull/ocikit"),
            ("distribution pull", "pull/distribution"),
        ],
        ratios: &[
            goal(
                "push monolithic: ocikit / distribution",
                "push-monolithic/ocikit-vs-distribution",
                2.0,
            ),
            goal(
                "push chunked: ocikit / distribution",
                "push-chunked/ocikit-vs-distribution",
                2.0,
            ),
            goal(
                "pull: ocikit / distribution",
                "pull/ocikit-vs-distribution",
                1.0,
            ),
        ],
    },
    Chart {
        section: "registry",
        file: "registry-manifest-get.svg",
        title: "Registry server: manifest GET by tag under wrk",
        bars: &[
            ("ocikit serve", "manifest-get/ocikit"),
            ("distribution 2.8", "manifest-get/distribution"),
        ],
        ratios: &[goal(
            "ocikit / distribution",
            "manifest-get/ocikit-vs-distribution",
            1.0,
        )],
    },
    Chart {
        section: "client",
        file: "client.svg",
        title: "Registry client: a ~500 MiB five-layer image",
        bars: &[
            ("ocikit pull", "pull-from-distribution/ocikit"),
            ("curl pull (the limit)", "pull-from-distribution/curl-limit"),
            ("skopeo pull", "pull-from-distribution/skopeo"),
            ("ocikit push", "push-to-ocikit-serve/ocikit"),
            ("skopeo push", "push-to-ocikit-serve/skopeo"),
        ],
        ratios: &[
            goal(
                "pull: ocikit / limit",
                "pull-from-distribution/ocikit-vs-limit",
                0.8,
            ),
            reported(
                "pull: ocikit / skopeo",
                "pull-from-distribution/ocikit-vs-skopeo",
            ),
            reported(
                "push: ocikit / skopeo",
                "push-to-ocikit-serve/ocikit-vs-skopeo",
            ),
        ],
    },
    Chart {
        section: "recompress",
        file: "recompress.svg",
        title: "Recompressing a gzip image to zstd, layout to layout",
        bars: &[
            ("ocikit copy --compression", "gzip-to-zstd/ocikit"),
            ("skopeo copy --dest-compress-format", "gzip-to-zstd/skopeo"),
        ],
        ratios: &[reported("ocikit / skopeo", "gzip-to-zstd/ocikit-vs-skopeo")],
    },
];

/// The sections of `docs/benchmarks.md`, in the order the file has them.
const SECTIONS: &[&str] = &[
    "digest",
    "store",
    "codec-layer",
    "codec-apply",
    "layout",
    "registry",
    "client",
    "recompress",
];

/// `cargo xtask bench charts`: re-links and redraws every section's charts from the tables
/// in `docs/benchmarks.md`.
pub(super) fn redraw_all() -> Result {
    let path = root().join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for name in SECTIONS {
        let body = section(&text, name)
            .ok_or_else(|| format!("docs/benchmarks.md has no `{name}` section"))?;
        super::write_section(name, body)?;
    }
    Ok(())
}

/// The body of section `name` (between its markers) of `text`.
fn section<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = format!("<!-- bench:{name}:start -->\n");
    let end = format!("<!-- bench:{name}:end -->");
    let a = text.find(&start)? + start.len();
    let b = a + text[a..].find(&end)?;
    Some(&text[a..b])
}

/// The rows of the first table in `body`: `| case | median | unit | min | max |`.
fn parse_table(body: &str) -> Result<Vec<Line>> {
    let mut rows = Vec::new();
    for row in body.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"case") || cells.iter().all(|c| c.starts_with("--")) {
            continue;
        }
        let [name, median, unit, min, max] = cells[..] else {
            return Err(format!("a table row without five cells: {row}"));
        };
        let number = |cell: &str| {
            cell.parse::<f64>()
                .map_err(|_| format!("`{cell}` is not a number in: {row}"))
        };
        rows.push(Line {
            name: name.to_owned(),
            median: number(median)?,
            unit: unit.to_owned(),
            min: number(min)?,
            max: number(max)?,
        });
    }
    Ok(rows)
}

/// `body` with its chart links (one per chart of section `name`) at the end, replacing any
/// it had.
pub(super) fn with_links(name: &str, body: &str) -> String {
    let mut out: String = body
        .lines()
        .filter(|l| !(l.starts_with("![") && l.contains("](bench/")))
        .map(|l| format!("{l}\n"))
        .collect();
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    for chart in CHARTS.iter().filter(|c| c.section == name) {
        out.push_str(&format!("\n![{}](bench/{})\n", chart.title, chart.file));
    }
    out
}

/// Draws the charts of section `name` of `text` (all of `docs/benchmarks.md`) into
/// `docs/bench/`.
pub(super) fn draw_section(text: &str, name: &str) -> Result {
    let body =
        section(text, name).ok_or_else(|| format!("docs/benchmarks.md has no `{name}` section"))?;
    let rows = parse_table(body)?;
    let machine = body
        .lines()
        .find_map(|l| l.strip_prefix("Machine: "))
        .unwrap_or("machine not stated")
        .trim_end_matches('.');
    let dir = root().join("docs/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for chart in CHARTS.iter().filter(|c| c.section == name) {
        let svg = draw(chart, &rows, machine)?;
        let path = dir.join(chart.file);
        std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("drew docs/bench/{}", chart.file);
    }
    Ok(())
}

fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// An axis tick: whole numbers without decimals.
fn tick(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// The headline line of a ratio, as the section's text words it.
fn ratio_text(ratio: &Ratio, rows: &[Line]) -> Result<String> {
    let value = line(rows, ratio.case)
        .ok_or_else(|| format!("the table has no `{}` row", ratio.case))?
        .median;
    Ok(match ratio.goal {
        Some(goal) => format!(
            "{}: {}x (goal ≥ {}x: {})",
            ratio.label,
            figure(value),
            goal,
            super::verdict(value >= goal)
        ),
        None => format!("{}: {}x (no goal; reported)", ratio.label, figure(value)),
    })
}

const OURS: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const THEIRS: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);

/// One chart as SVG text.
fn draw(chart: &Chart, rows: &[Line], machine: &str) -> Result<String> {
    let mut bars = Vec::new();
    for (label, case) in chart.bars {
        let row = line(rows, case).ok_or_else(|| {
            format!(
                "the `{}` table has no `{case}` row for {}",
                chart.section, chart.file
            )
        })?;
        bars.push((*label, row.median, row.unit.as_str()));
    }
    let unit = bars.first().map_or("", |b| b.2);
    if let Some(other) = bars.iter().find(|b| b.2 != unit) {
        return Err(format!(
            "{}: bars in `{unit}` and `{}` cannot share an axis",
            chart.file, other.2
        ));
    }
    let notes = chart
        .ratios
        .iter()
        .map(|r| ratio_text(r, rows))
        .collect::<Result<Vec<_>>>()?;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let header = 40 + 20 * notes.len() as u32;
    let plot = 50 + 34 * bars.len() as u32;
    let footer = 28;
    let (width, height) = (820, header + plot + footer);
    let n = bars.len();

    let mut svg = String::new();
    {
        let err = |e: DrawingAreaErrorKind<_>| format!("cannot draw {}: {e}", chart.file);
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, rest) = root.split_vertically(header);
        let (middle, bottom) = rest.split_vertically(plot);
        top.draw(&Text::new(
            chart.title,
            (12, 10),
            ("sans-serif", 22).into_font().style(FontStyle::Bold),
        ))
        .map_err(err)?;
        for (i, note) in notes.iter().enumerate() {
            top.draw(&Text::new(
                note.as_str(),
                (12, 36 + 20 * i as i32),
                ("sans-serif", 17),
            ))
            .map_err(err)?;
        }
        bottom
            .draw(&Text::new(
                format!("{machine}. Medians; from docs/benchmarks.md."),
                (12, 6),
                ("sans-serif", 13)
                    .into_font()
                    .color(&RGBColor(0x60, 0x60, 0x60)),
            ))
            .map_err(err)?;

        let mut area = ChartBuilder::on(&middle)
            .margin_left(12)
            .margin_right(90)
            .margin_top(4)
            .x_label_area_size(36)
            .y_label_area_size(260)
            .build_cartesian_2d(
                0.0..(max * 1.05).max(f64::MIN_POSITIVE),
                (0..n.saturating_sub(1)).into_segmented(),
            )
            .map_err(err)?;
        // The first bar on top: bar `i` sits in segment `n - 1 - i`.
        let label_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(s) if *s < n => bars[n - 1 - s].0.to_owned(),
            _ => String::new(),
        };
        area.configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .y_labels(n)
            .y_label_formatter(&label_of)
            .y_label_style(("sans-serif", 16))
            .x_labels(6)
            .x_label_formatter(&|v| tick(*v))
            .x_label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .x_desc(unit)
            .draw()
            .map_err(err)?;
        area.draw_series(bars.iter().enumerate().map(|(i, (label, value, _))| {
            let color = if label.starts_with("ocikit") {
                OURS
            } else {
                THEIRS
            };
            let segment = n - 1 - i;
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(segment)),
                    (*value, SegmentValue::Exact(segment + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(6, 6, 0, 0);
            bar
        }))
        .map_err(err)?;
        let value_style =
            TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw_series(bars.iter().enumerate().map(|(i, (_, value, unit))| {
            EmptyElement::at((*value, SegmentValue::CenterOf(n - 1 - i)))
                + Text::new(
                    format!("{} {unit}", figure(*value)),
                    (6, 0),
                    value_style.clone(),
                )
        }))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = "Machine: Test CPU, 2 cores; rustc 1.0; measured 2026-12-02.
Words.

| case | median | unit | min | max |
|---|---:|---|---:|---:|
| fsck-large/ocikit | 1590.53 | MB/s | 1557.37 | 1679.90 |
| fsck-large/ocidir | 836.06 | MB/s | 786.54 | 918.50 |
| fsck-large/ocikit-vs-ocidir | 1.90 | x | 1.90 | 1.90 |

fsck: **1.90x** (goal ≥ 1.7x: met).
";

    fn document(body: &str) -> String {
        format!("# B\n\n<!-- bench:layout:start -->\n{body}<!-- bench:layout:end -->\n\nafter\n")
    }

    #[test]
    fn tables_parse_row_by_row() {
        let rows = parse_table(SECTION).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            Line {
                name: "fsck-large/ocidir".into(),
                median: 836.06,
                unit: "MB/s".into(),
                min: 786.54,
                max: 918.50,
            }
        );
        assert_eq!(rows[2].unit, "x");
    }

    #[test]
    fn malformed_rows_are_refused() {
        assert!(parse_table("| a | 1 | x |\n").is_err());
        assert!(parse_table("| a | fast | x | 1 | 2 |\n").is_err());
    }

    #[test]
    fn sections_are_found_between_their_markers() {
        let text = document(SECTION);
        assert_eq!(section(&text, "layout"), Some(SECTION));
        assert_eq!(section(&text, "digest"), None);
    }

    #[test]
    fn links_are_added_once() {
        let once = with_links("layout", SECTION);
        assert!(once.contains("![fsck of a ~1 GiB layout (480 layers)](bench/layout-fsck.svg)"));
        assert!(once.contains("](bench/layout-referrers.svg)"));
        assert_eq!(with_links("layout", &once), once);
        assert!(once.starts_with(SECTION.trim_end()));
    }

    #[test]
    fn a_chart_is_svg_with_its_figures_and_verdict() {
        let chart = CHARTS.iter().find(|c| c.file == "layout-fsck.svg").unwrap();
        let rows = parse_table(SECTION).unwrap();
        let svg = draw(chart, &rows, "Test CPU, 2 cores").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "ocikit fsck",
            "ocidir 0.8 fsck",
            "1591 MB/s",
            "836 MB/s",
            "ocikit / ocidir: 1.90x (goal ≥ 1.7x: met)",
            "Test CPU, 2 cores",
        ] {
            assert!(svg.contains(text), "no `{text}` in the chart");
        }
        assert!(svg.contains("<rect"));
    }

    #[test]
    fn a_missing_row_is_an_error() {
        let chart = CHARTS
            .iter()
            .find(|c| c.file == "layout-referrers.svg")
            .unwrap();
        let rows = parse_table(SECTION).unwrap();
        let err = draw(chart, &rows, "m").unwrap_err();
        assert!(err.contains("referrers/ocikit-in-sync"), "{err}");
    }

    #[test]
    fn every_chart_draws_from_the_committed_tables() {
        let text = std::fs::read_to_string(root().join("docs/benchmarks.md")).unwrap();
        for name in SECTIONS {
            let rows = parse_table(section(&text, name).unwrap()).unwrap();
            assert!(!rows.is_empty(), "{name}");
            for chart in CHARTS.iter().filter(|c| c.section == *name) {
                draw(chart, &rows, "m").unwrap();
            }
        }
        for chart in CHARTS {
            assert!(SECTIONS.contains(&chart.section), "{}", chart.file);
        }
    }
}
