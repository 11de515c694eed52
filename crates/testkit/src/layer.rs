//! Building layer tarballs entry by entry, including entries no honest producer would write.

use tar::{EntryType, Header};

/// Modification time of every entry, fixed so that rebuilding a fixture gives the same digest.
pub const MTIME: u64 = 1_700_000_000;

/// Writes an uncompressed layer tar in memory.
///
/// Entries are owned by the uid/gid set with [`LayerBuilder::owner`] (root by default) and carry
/// [`MTIME`]. [`LayerBuilder::raw`] bypasses the `tar` crate's path validation so tests can
/// build hostile layers (`..` components, absolute paths).
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
            uid: 0,
            gid: 0,
        }
    }

    /// Sets the owner of the entries appended after this call.
    pub fn owner(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.uid = uid.into();
        self.gid = gid.into();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut header = self.header(EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut header, path, std::io::empty())
            .unwrap_or_else(|e| panic!("appending directory {path}: {e}"));
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> &mut Self {
        let mut header = self.header(EntryType::Regular, mode, contents.len() as u64);
        self.tar
            .append_data(&mut header, path, contents)
            .unwrap_or_else(|e| panic!("appending file {path}: {e}"));
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(EntryType::Symlink, path, target)
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(EntryType::Link, path, target)
    }

    /// Appends a device node or fifo (`kind` is `Char`, `Block` or `Fifo`).
    pub fn special(&mut self, kind: EntryType, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut header = self.header(kind, 0o644, 0);
        header
            .set_device_major(major)
            .and_then(|()| header.set_device_minor(minor))
            .unwrap_or_else(|e| panic!("setting device numbers of {path}: {e}"));
        self.tar
            .append_data(&mut header, path, std::io::empty())
            .unwrap_or_else(|e| panic!("appending special file {path}: {e}"));
        self
    }

    /// Appends an entry whose name and link name are copied byte for byte into the header,
    /// unvalidated. Both must fit the 100-byte header fields.
    pub fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], contents: &[u8]) -> &mut Self {
        let mut header = self.header(kind, 0o644, contents.len() as u64);
        let fields = header.as_old_mut();
        fields.name[..name.len()].copy_from_slice(name);
        fields.linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        self.tar
            .append(&header, contents)
            .unwrap_or_else(|e| panic!("appending raw entry: {e}"));
        self
    }

    /// Finishes the archive and returns its bytes.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar
            .into_inner()
            .unwrap_or_else(|e| panic!("finishing layer tar: {e}"))
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
        let mut header = self.header(kind, 0o777, 0);
        self.tar
            .append_link(&mut header, path, target)
            .unwrap_or_else(|e| panic!("appending link {path} -> {target}: {e}"));
        self
    }

    fn header(&self, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(MTIME);
        header
    }
}
