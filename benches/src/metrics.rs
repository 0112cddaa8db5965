//! What the benchmark reads from the operating system: bytes written,
//! peak memory, bytes on disk, and a description of the machine.
//!
//! Everything comes from Linux's `/proc`; on other systems the readers
//! return `None` and the output says the figure is not available.
//!
//! - Bytes written: `write_bytes - cancelled_write_bytes` of
//!   `/proc/self/io`. The kernel counts a page when it goes from clean to
//!   dirty (or when a direct write is issued), for every thread of the
//!   process including a store's background threads. A page dirtied twice
//!   before it is written back counts once, which is also what the device
//!   sees.
//! - Peak memory: `VmHWM` of `/proc/self/status`, the high-water mark of the
//!   resident set. It is process-wide, which is why every store runs in a
//!   child process of its own.
//! - Bytes on disk: allocated blocks (`st_blocks * 512`) of every file under
//!   the data directory, so that sparse files (LMDB's map) count for what
//!   they really use.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Bytes this process has caused to be written to storage so far.
pub fn io_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let written = field("write_bytes:")?;
    let cancelled = field("cancelled_write_bytes:").unwrap_or(0);
    Some(written.saturating_sub(cancelled))
}

/// The peak resident set size of this process, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The bytes allocated on disk to every file under `dir`.
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    Ok(total)
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory, from `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// Kernel release.
    pub kernel: String,
    /// Operating system and architecture.
    pub os: String,
    /// The data directory.
    pub data_dir: String,
    /// The filesystem type of the data directory (`ext4`, `xfs`, `tmpfs`...).
    pub filesystem: String,
    /// The device or source mounted there.
    pub filesystem_source: String,
    /// When the run started, UTC, ISO 8601.
    pub date_utc: String,
    /// Whether `/proc/self/io` exists, i.e. whether write amplification is
    /// measured at all.
    pub io_accounting: bool,
    /// Whether `/proc/self/status` reports `VmHWM`.
    pub rss_accounting: bool,
}

impl Machine {
    /// Describes this machine, with `data_dir` as the benchmark's directory.
    pub fn describe(data_dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, m)| m.trim().to_string());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .and_then(|kib| kib.checked_mul(1024))
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
        let canonical = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let (filesystem, filesystem_source) =
            mount_of(&canonical).unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            kernel,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            data_dir: canonical.display().to_string(),
            filesystem,
            filesystem_source,
            date_utc: utc_now(),
            io_accounting: io_write_bytes().is_some(),
            rss_accounting: peak_rss_bytes().is_some(),
        }
    }
}

/// The filesystem type and source of the mount that holds `path`: the
/// longest mount point in `/proc/self/mounts` that is a prefix of it.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = fields.next()?;
            let point = fields.next()?;
            let fstype = fields.next()?;
            // Mount points escape spaces as \040.
            let point = point.replace("\\040", " ");
            path.starts_with(&point)
                .then(|| (point.len(), fstype.to_string(), source.to_string()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fstype, source)| (fstype, source))
}

/// The current time, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a
/// day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn disk_bytes_counts_files_in_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        let bytes = disk_bytes(dir.path()).unwrap();
        assert!(bytes >= 10_000, "{bytes}");
    }
}
