//! Files only their owner may read: the state directory and everything in
//! it (the journal holds every request and answer of every run; the locks
//! say who runs what). Directories are created `0700` and files `0600`
//! whatever the umask; ones that already exist with looser permissions are
//! left as they are, with a warning (changing them could break a setup
//! someone chose, such as a group-shared state directory).

use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) `0700`; warns when it exists with
/// looser permissions.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    warn_if_loose(dir);
    Ok(())
}

/// Opens `path` for reading and writing, creating it `0600` if missing
/// (never truncating); warns when it exists with looser permissions.
pub(crate) fn open_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::File::options();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    warn_if_loose(path);
    Ok(file)
}

/// Warns when others than the owner may read or write `path` (a file or
/// directory that does not exist is not warned about).
pub(crate) fn warn_if_loose(path: &Path) {
    if let Some(mode) = loose_mode(path) {
        tracing::warn!(
            "{} is readable or writable by others (mode {mode:o}); `chmod go-rwx` it: runbook's state holds every request and answer of every run",
            path.display()
        );
    }
}

/// The permission bits of `path` when group or others have any.
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_path: &Path) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_directories_and_files_and_spots_loose_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let file = dir.join("f");
        drop(open_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert_eq!(loose_mode(&file), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(loose_mode(&file), Some(0o644));
        // Opening an existing file keeps its mode and its contents.
        std::fs::write(&file, "kept").unwrap();
        drop(open_file(&file).unwrap());
        assert_eq!(mode(&file), 0o644);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
    }
}
