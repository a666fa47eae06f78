//! The size caps on what runbook reads, and the one reader of input files.
//!
//! Every file runbook reads (a playbook, a params file, simulator fixtures,
//! the aliyun CLI's credentials config, a saved plan) goes through
//! [`read_file`]: it reads only regular files, so a FIFO, a device such as
//! `/dev/zero` or a directory is refused at once instead of hanging or growing
//! memory without bound, and it stops reading past a cap chosen for the kind of
//! file. The README's "Limits" section states the caps. A leaf module: it
//! imports nothing from the rest of the crate.

use std::fmt;
use std::io::Read;
use std::path::Path;

const MIB: u64 = 1024 * 1024;

/// A playbook file.
pub const PLAYBOOK_BYTES: u64 = 16 * MIB;
/// A plan written by `runbook plan -o`.
pub const PLAN_BYTES: u64 = 16 * MIB;
/// A simulator fixtures file.
pub const FIXTURES_BYTES: u64 = 16 * MIB;
/// A params file (`--params-file`).
pub const PARAMS_BYTES: u64 = MIB;
/// The aliyun CLI's config file (`~/.aliyun/config.json`).
pub const CONFIG_BYTES: u64 = MIB;
/// The body of one HTTP answer of the cloud API.
pub const RESPONSE_BYTES: u64 = 4 * MIB;

/// Why a file could not be read. Its `Display` is a fragment that reads well
/// after the file's name: "`x.yaml` is a FIFO, not a regular file".
#[derive(Debug)]
pub enum ReadError {
    /// The file does not exist.
    NotFound,
    /// The path names something other than a regular file.
    NotRegular {
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// The file is larger than the cap.
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
    /// Any other I/O error.
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("does not exist"),
            ReadError::NotRegular { kind } => write!(f, "is {kind}, not a regular file"),
            ReadError::TooLarge { cap } => {
                write!(f, "is larger than the {} limit", format_bytes(*cap))
            }
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads the regular file at `path`, at most `cap` bytes of it.
///
/// The type is checked before the file is opened (opening a FIFO would wait
/// for a writer), and again on the opened file, which must be the one checked.
///
/// # Errors
///
/// The path does not exist, is not a regular file, is larger than `cap`, or
/// cannot be read.
pub fn read_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let before = std::fs::metadata(path).map_err(io_error)?;
    check_regular(&before)?;
    if before.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    let file = std::fs::File::open(path).map_err(io_error)?;
    let opened = file.metadata().map_err(io_error)?;
    check_regular(&opened)?;
    if !same_file(&before, &opened) {
        return Err(ReadError::Io(std::io::Error::other(
            "it was replaced while being opened",
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    // One byte past the cap tells a file at the cap from one that grew past it.
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(bytes)
}

/// [`read_file`] of a file that must be UTF-8 text.
///
/// # Errors
///
/// As [`read_file`], and `Io` with kind `InvalidData` for text that is not UTF-8.
pub fn read_text(path: &Path, cap: u64) -> Result<String, ReadError> {
    let bytes = read_file(path, cap)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

/// A byte count as the README states caps: "16 MiB", "512 KiB", "100 bytes".
pub fn format_bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

fn io_error(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ReadError::NotFound
    } else {
        ReadError::Io(e)
    }
}

fn check_regular(meta: &std::fs::Metadata) -> Result<(), ReadError> {
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    Err(ReadError::NotRegular {
        kind: file_kind(&t),
    })
}

#[cfg(unix)]
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_up_to_the_cap_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for cap in [0u64, 1, 7, 4096] {
            let len = usize::try_from(cap).unwrap();
            std::fs::write(&path, vec![b'a'; len]).unwrap();
            assert_eq!(read_file(&path, cap).unwrap().len(), len);
            std::fs::write(&path, vec![b'a'; len + 1]).unwrap();
            let err = read_file(&path, cap).unwrap_err();
            assert!(
                matches!(err, ReadError::TooLarge { cap: c } if c == cap),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_file(dir.path(), 10).unwrap_err();
        assert_eq!(err.to_string(), "is a directory, not a regular file");
        let err = read_file(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(err.to_string(), "is a character device, not a regular file");
        let err = read_file(&dir.path().join("missing"), 10).unwrap_err();
        assert_eq!(err.to_string(), "does not exist");
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = read_text(&path, 10).unwrap_err();
        assert_eq!(err.to_string(), "cannot be read: it is not UTF-8 text");
    }

    #[test]
    fn caps_read_as_the_readme_states_them() {
        assert_eq!(format_bytes(PLAYBOOK_BYTES), "16 MiB");
        assert_eq!(format_bytes(PARAMS_BYTES), "1 MiB");
        assert_eq!(format_bytes(RESPONSE_BYTES), "4 MiB");
        assert_eq!(format_bytes(512 * 1024), "512 KiB");
        assert_eq!(format_bytes(100), "100 bytes");
    }
}
