//! Resolving an image config `User` to numeric ids, the way container engines do: names are
//! looked up in the image's own `/etc/passwd` and `/etc/group`, never the host's.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::unpack::OPAQUE_XATTR;

/// passwd and group files beyond this size are refused rather than read into memory.
const MAX_DATABASE_SIZE: u64 = 1 << 20;

/// Resolves `user` (`name`, `uid`, `uid:gid`, `name:group`, ...) against the merged view of
/// `layers` (lowest first). The error is the reason, for the caller to wrap.
pub(crate) fn resolve(layers: &[PathBuf], user: &str) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, primary_gid) = match user_part.parse::<u32>() {
        Ok(uid) if group_part.is_some() => (uid, None),
        Ok(uid) => {
            let passwd = read_merged(layers, "etc/passwd")?;
            let entry = passwd.and_then(|p| find(&p, 2, user_part));
            (uid, entry.map(|e| id_field(&e, 3, "passwd")).transpose()?)
        }
        Err(_) => {
            let passwd = read_merged(layers, "etc/passwd")?.ok_or_else(|| {
                format!(
                    "the image has no /etc/passwd to look up user '{user_part}'; use a numeric uid"
                )
            })?;
            let entry = find(&passwd, 0, user_part).ok_or_else(|| {
                format!("the image's /etc/passwd has no user named '{user_part}'")
            })?;
            (
                id_field(&entry, 2, "passwd")?,
                Some(id_field(&entry, 3, "passwd")?),
            )
        }
    };
    let gid = match group_part {
        // A numeric uid without a passwd entry runs with gid 0, as Docker and runc do.
        None => primary_gid.unwrap_or(0),
        Some(group) => {
            match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let groups = read_merged(layers, "etc/group")?.ok_or_else(|| {
                    format!("the image has no /etc/group to look up group '{group}'; use a numeric gid")
                })?;
                    let entry = find(&groups, 0, group).ok_or_else(|| {
                        format!("the image's /etc/group has no group named '{group}'")
                    })?;
                    id_field(&entry, 2, "group")?
                }
            }
        }
    };
    Ok((uid, gid))
}

/// The fields of the first line of a colon-separated database whose field `index` is `value`.
fn find(database: &str, index: usize, value: &str) -> Option<Vec<String>> {
    database
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.get(index).map(String::as_str) == Some(value))
}

fn id_field(entry: &[String], index: usize, file: &str) -> Result<u32, String> {
    entry
        .get(index)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| format!("the image's /etc/{file} has an entry with an invalid id"))
}

/// Reads `rel` from the merged view of the layers: the topmost layer that has it wins, and an
/// overlay whiteout or opaque directory above hides lower copies. Symlinks are not followed,
/// since they would be resolved against the host, not the image.
fn read_merged(layers: &[PathBuf], rel: &str) -> Result<Option<String>, String> {
    let components: Vec<&str> = rel.split('/').collect();
    for layer in layers.iter().rev() {
        match lookup(layer, &components)? {
            Lookup::Found(path) => return read_small(&path, rel).map(Some),
            Lookup::Hidden => return Ok(None),
            Lookup::Absent => {}
        }
    }
    Ok(None)
}

enum Lookup {
    Found(PathBuf),
    /// Whited out, or under an opaque directory: lower layers do not count.
    Hidden,
    /// This layer has nothing to say; look lower.
    Absent,
}

fn lookup(layer: &Path, components: &[&str]) -> Result<Lookup, String> {
    let mut dir = layer.to_path_buf();
    for (i, component) in components.iter().enumerate() {
        let path = dir.join(component);
        let last = i + 1 == components.len();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(_) if is_opaque(&dir) => return Ok(Lookup::Hidden),
            Err(_) => return Ok(Lookup::Absent),
        };
        let file_type = meta.file_type();
        if file_type.is_char_device() && meta.rdev() == 0 {
            return Ok(Lookup::Hidden);
        }
        if file_type.is_symlink() {
            return Err(format!(
                "/{} is a symlink in the image, which roost does not follow; use a numeric uid:gid",
                components[..=i].join("/")
            ));
        }
        match (last, file_type.is_dir(), file_type.is_file()) {
            (true, _, true) => return Ok(Lookup::Found(path)),
            (false, true, _) => dir = path,
            _ => return Ok(Lookup::Hidden),
        }
    }
    Ok(Lookup::Absent)
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, OPAQUE_XATTR), Ok(Some(value)) if value == b"y")
}

fn read_small(path: &Path, rel: &str) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read /{rel}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_DATABASE_SIZE)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read /{rel}: {e}"))?;
    Ok(text)
}
