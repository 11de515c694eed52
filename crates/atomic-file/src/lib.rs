//! Replacing a small file durably: state files, keys and tokens that roost
//! must find whole after a crash or a power loss.
//!
//! [`write`] writes a temp file in the same directory, fsyncs it, renames
//! it over the target and fsyncs the directory, so the rename itself is on
//! disk when it returns. The temp file is created with the final permission
//! bits, so a secret is never readable by others, not even for a moment.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `contents` and permission bits `mode` (e.g. 0o600
/// for keys, 0o644 for state anyone may read). On error the target is left
/// as it was and no temp file remains.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    put(path, contents, mode, Replace::Yes)
}

/// Like [`write`], but fails with `AlreadyExists` instead of replacing a
/// file that is there: for keys whose loss would lose data sealed with them.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    put(path, contents, mode, Replace::No)
}

#[derive(PartialEq)]
enum Replace {
    Yes,
    No,
}

fn put(path: &Path, contents: &[u8], mode: u32, replace: Replace) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile creates the file 0600; widen only after, narrow never needed.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    if replace == Replace::Yes {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_whole_files_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, b"first", 0o600).unwrap();
        write(&path, b"second", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        write(&path, b"third", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temp file was left behind");
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"first", 0o600).unwrap();
        let err = write_new(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("key");
        assert!(write(&path, b"x", 0o600).is_err());
        assert!(!path.exists());
    }
}
