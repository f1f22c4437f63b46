//! File content between the database and the kernel: small content in memory, large content in
//! an unlinked spool file, so that the process's memory is bounded by configuration and not by
//! the size of the files it serves.
//!
//! A [`Content`] is cheap to clone (the clone shares the bytes). In-memory content is
//! copy-on-write: a commit can write a snapshot to the database while new writes arrive.
//! Spooled content is written in place, so its owner serializes writes with commits.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::err;
use crate::error::{Error, Result};

/// The size of the pieces large content moves in, between spool files and databases.
pub const CHUNK: usize = 1 << 20;

/// The pieces `len` bytes of content move in, `piece` bytes at most each: (offset, length).
pub fn pieces(len: u64, piece: usize) -> impl Iterator<Item = (u64, usize)> {
    (0..len)
        .step_by(piece)
        .map(move |offset| (offset, piece.min((len - offset) as usize)))
}

/// Where content larger than `memory_limit` bytes is kept while a file is open.
#[derive(Debug, Clone)]
pub struct SpoolPolicy {
    pub dir: PathBuf,
    pub memory_limit: u64,
}

/// Content up to this size stays in memory by default.
pub const DEFAULT_MEMORY_LIMIT: u64 = 4 << 20;

impl Default for SpoolPolicy {
    fn default() -> Self {
        Self {
            dir: default_spool_dir(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// `$TMPDIR`, else `/var/tmp` (on disk on most systems, where `/tmp` is often memory).
pub fn default_spool_dir() -> PathBuf {
    match std::env::var_os("TMPDIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/tmp"),
    }
}

impl SpoolPolicy {
    /// Everything in memory: for callers that need the bytes whole anyway.
    pub fn in_memory() -> Self {
        Self {
            dir: default_spool_dir(),
            memory_limit: u64::MAX,
        }
    }

    /// Whether content of `len` bytes belongs in a spool file.
    pub fn spools(&self, len: u64) -> bool {
        len > self.memory_limit
    }

    /// Empty content, spooled when `len` (the size it is about to get) calls for it.
    pub fn content_for(&self, len: u64) -> Result<Content> {
        if self.spools(len) {
            Ok(Content::Spool(Arc::new(SpoolFile::create(&self.dir)?)))
        } else {
            Ok(Content::Mem(Arc::new(Vec::with_capacity(len as usize))))
        }
    }
}

/// An anonymous file (unlinked from the start: it never outlives the process).
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    len: AtomicU64,
}

impl SpoolFile {
    fn create(dir: &Path) -> Result<Self> {
        let file = tempfile::tempfile_in(dir).map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!(
                    "cannot create a spool file for large content in {} ({e}); set \
                     [cache] spool_dir to a writable directory",
                    dir.display()
                ),
            )
        })?;
        Ok(Self {
            file,
            len: AtomicU64::new(0),
        })
    }
}

fn spool_error(what: &str, e: io::Error) -> Error {
    Error::new(
        e.raw_os_error().unwrap_or(libc::EIO),
        format!("spool file {what}: {e}"),
    )
}

#[derive(Debug, Clone)]
pub enum Content {
    Mem(Arc<Vec<u8>>),
    Spool(Arc<SpoolFile>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Mem(Arc::default())
    }
}

impl From<Vec<u8>> for Content {
    fn from(v: Vec<u8>) -> Self {
        Content::Mem(Arc::new(v))
    }
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Mem(v) => v.len() as u64,
            Content::Spool(s) => s.len.load(Ordering::Acquire),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_spooled(&self) -> bool {
        matches!(self, Content::Spool(_))
    }

    /// The bytes, when they are in memory.
    pub fn as_slice(&self) -> Option<&[u8]> {
        match self {
            Content::Mem(v) => Some(v),
            Content::Spool(_) => None,
        }
    }

    /// Up to `size` bytes from `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, size: usize) -> Result<Vec<u8>> {
        let len = self.len();
        let start = offset.min(len);
        let end = start.saturating_add(size as u64).min(len);
        let mut buf = vec![0; (end - start) as usize];
        self.read_exact_at(start, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset`; the range must be inside the content.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Content::Mem(v) => {
                let start = offset as usize;
                buf.copy_from_slice(&v[start..start + buf.len()]);
                Ok(())
            }
            Content::Spool(s) => s
                .file
                .read_exact_at(buf, offset)
                .map_err(|e| spool_error("read", e)),
        }
    }

    /// The bytes as a vector, copied only if they are shared or spooled.
    pub fn into_vec(self) -> Result<Vec<u8>> {
        match self {
            Content::Mem(v) => Ok(Arc::try_unwrap(v).unwrap_or_else(|v| v.to_vec())),
            spooled => spooled.to_vec(),
        }
    }

    /// All of it in memory, copied.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        Ok(self.bytes()?.into_owned())
    }

    /// All of it in memory: borrowed when it is, read from the spool file when not. For a
    /// database driver that takes a value in one piece.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Content::Mem(v) => Ok(std::borrow::Cow::Borrowed(v)),
            Content::Spool(_) => self.read_at(0, self.len() as usize).map(Into::into),
        }
    }

    /// Moves in-memory content to a spool file once it would grow past the policy's limit.
    fn make_room(&mut self, policy: &SpoolPolicy, new_len: u64) -> Result<()> {
        if let Content::Mem(v) = self
            && policy.spools(new_len)
        {
            let spool = SpoolFile::create(&policy.dir)?;
            spool
                .file
                .write_all_at(v, 0)
                .map_err(|e| spool_error("write", e))?;
            spool.len.store(v.len() as u64, Ordering::Release);
            *self = Content::Spool(Arc::new(spool));
        }
        Ok(())
    }

    /// Writes `buf` at `offset`, zero-filling any gap. In-memory content is copied first if a
    /// snapshot of it is being committed; spooled content is changed in place.
    pub fn write_at(&mut self, policy: &SpoolPolicy, offset: u64, buf: &[u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| err!(EFBIG, "write past the largest file offset"))?;
        self.make_room(policy, end.max(self.len()))?;
        match self {
            Content::Mem(v) => {
                let data = Arc::make_mut(v);
                let (start, end) = (offset as usize, end as usize);
                if end > data.len() {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(buf);
            }
            Content::Spool(s) => {
                s.file
                    .write_all_at(buf, offset)
                    .map_err(|e| spool_error("write", e))?;
                s.len.fetch_max(end, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Truncates or zero-extends to `len` bytes.
    pub fn set_len(&mut self, policy: &SpoolPolicy, len: u64) -> Result<()> {
        self.make_room(policy, len)?;
        match self {
            Content::Mem(v) => Arc::make_mut(v).resize(len as usize, 0),
            Content::Spool(s) => {
                s.file.set_len(len).map_err(|e| spool_error("resize", e))?;
                s.len.store(len, Ordering::Release);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u64) -> (tempfile::TempDir, SpoolPolicy) {
        let dir = tempfile::tempdir().unwrap();
        let policy = SpoolPolicy {
            dir: dir.path().to_path_buf(),
            memory_limit: limit,
        };
        (dir, policy)
    }

    #[test]
    fn small_content_stays_in_memory_and_is_copy_on_write() {
        let (_d, p) = policy(16);
        let mut c = Content::from(b"hello".to_vec());
        let snapshot = c.clone();
        c.write_at(&p, 5, b" world").unwrap();
        assert!(!c.is_spooled());
        assert_eq!(c.read_at(0, 100).unwrap(), b"hello world");
        assert_eq!(snapshot.read_at(0, 100).unwrap(), b"hello");
    }

    #[test]
    fn content_moves_to_a_spool_file_past_the_limit() {
        let (_d, p) = policy(8);
        let mut c = Content::from(b"0123".to_vec());
        c.write_at(&p, 10, b"abcdef").unwrap();
        assert!(c.is_spooled());
        assert_eq!(c.len(), 16);
        assert_eq!(c.to_vec().unwrap(), b"0123\0\0\0\0\0\0abcdef");
        assert_eq!(c.read_at(12, 100).unwrap(), b"cdef");
        assert_eq!(c.read_at(20, 4).unwrap(), b"");
        c.set_len(&p, 3).unwrap();
        assert_eq!(c.to_vec().unwrap(), b"012");
        c.set_len(&p, 5).unwrap();
        assert_eq!(c.to_vec().unwrap(), b"012\0\0");
        let mut buf = [0u8; 2];
        c.read_exact_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"12");
    }

    #[test]
    fn an_unwritable_spool_dir_is_a_clear_error() {
        let p = SpoolPolicy {
            dir: PathBuf::from("/nonexistent/regfs-spool"),
            memory_limit: 1,
        };
        let mut c = Content::default();
        let e = c.write_at(&p, 0, b"too big").unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(e.message().contains("spool_dir"), "{}", e.message());
    }
}
