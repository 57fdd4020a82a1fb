//! [`Limits`]: what decoding and applying one layer may consume.

/// Limits on decompression and tar parsing, on by default. Exceeding one fails with
/// [`crate::Error::LimitExceeded`], never with an out-of-memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most bytes decompression may produce for one layer (default 64 GiB).
    pub max_decompressed_bytes: u64,
    /// Most entries in one layer's tar (default 4 million).
    pub max_entries: u64,
    /// Most metadata bytes for one entry: PAX records, GNU long names and links, xattrs
    /// (default 1 MiB, as Go's archive/tar after CVE-2022-2879).
    pub max_entry_metadata: u64,
    /// Largest zstd window (as a power of two) a frame may ask for (default 27: 128 MiB).
    pub max_zstd_window_log: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_decompressed_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_entry_metadata: 1 << 20,
            max_zstd_window_log: 27,
        }
    }
}

impl Limits {
    /// No limits at all (for trusted content only).
    pub fn unlimited() -> Limits {
        Limits {
            max_decompressed_bytes: u64::MAX,
            max_entries: u64::MAX,
            max_entry_metadata: u64::MAX,
            max_zstd_window_log: 31,
        }
    }

    /// These limits with another decompressed-size cap.
    pub fn with_max_decompressed_bytes(mut self, max: u64) -> Limits {
        self.max_decompressed_bytes = max;
        self
    }

    /// These limits with another entry-count cap.
    pub fn with_max_entries(mut self, max: u64) -> Limits {
        self.max_entries = max;
        self
    }

    /// These limits with another per-entry metadata cap.
    pub fn with_max_entry_metadata(mut self, max: u64) -> Limits {
        self.max_entry_metadata = max;
        self
    }

    /// These limits with another zstd window cap (log2 of bytes, 10 to 31).
    pub fn with_max_zstd_window_log(mut self, log: u32) -> Limits {
        self.max_zstd_window_log = log.clamp(10, 31);
        self
    }
}
