//! Size-based rotation of machine logs.
//!
//! Machines write their log through an `O_APPEND` descriptor they inherited
//! at create and keep for their lifetime, so the file cannot be renamed away
//! from them. Rotation therefore copies the file and truncates it in place
//! (copytruncate): appending writers continue at the new, zero end. Lines
//! written between the copy and the truncate are lost; at machine log rates
//! that window is microseconds.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::bundle::write_atomically;
use crate::RuntimeError;

/// Rotates `path` if it is larger than `max_bytes`, keeping `keep` old
/// copies as `path.1` (newest) to `path.<keep>`. Returns whether it rotated.
/// A missing log is not an error.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: usize) -> Result<bool, RuntimeError> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => {
            return Err(RuntimeError::io(
                format!("cannot stat {}", path.display()),
                err,
            ))
        }
    };
    if size <= max_bytes {
        return Ok(false);
    }
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        match fs::rename(&from, numbered(path, n + 1)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(RuntimeError::io(
                    format!("cannot rotate {}", from.display()),
                    err,
                ))
            }
        }
    }
    if keep > 0 {
        let contents = fs::read(path)
            .map_err(|err| RuntimeError::io(format!("cannot read {}", path.display()), err))?;
        write_atomically(&numbered(path, 1), &contents)?;
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(0))
        .map_err(|err| RuntimeError::io(format!("cannot truncate {}", path.display()), err))?;
    tracing::debug!(log = %path.display(), size, keep, "rotated log");
    Ok(true)
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_by_copy_and_truncate_and_keeps_appending_writers_working() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("machine.log");
        let mut writer = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .expect("open");
        writer.write_all(b"first generation\n").expect("write");

        assert!(!rotate_if_needed(&log, 1024, 2).expect("small log"));
        assert!(rotate_if_needed(&log, 4, 2).expect("rotate"));
        writer.write_all(b"second\n").expect("write");
        assert!(rotate_if_needed(&log, 4, 2).expect("rotate again"));
        writer.write_all(b"third\n").expect("write");
        assert!(rotate_if_needed(&log, 4, 2).expect("rotate a third time"));

        assert_eq!(fs::read_to_string(&log).expect("log"), "");
        assert_eq!(
            fs::read_to_string(numbered(&log, 1)).expect("log.1"),
            "third\n"
        );
        assert_eq!(
            fs::read_to_string(numbered(&log, 2)).expect("log.2"),
            "second\n"
        );
        assert!(!numbered(&log, 3).exists(), "only `keep` copies survive");
    }

    #[test]
    fn missing_log_is_not_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!rotate_if_needed(&dir.path().join("none"), 0, 3).expect("missing"));
    }
}
