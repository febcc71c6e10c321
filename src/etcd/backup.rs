//! The backup file of etcd's Maintenance `Snapshot` call, as `etcdctl
//! snapshot save` stores it, and checking one before a restore.
//!
//! Format, in order:
//! - the store's state in its snapshot format ([`EtcdSnapshot`]: the MVCC
//!   snapshot, then the lease section);
//! - zero bytes, as many as make the body (state, zeros and the length
//!   below) a multiple of 512 bytes: etcdctl 3.4 refuses a download whose
//!   size is not a multiple of 512 plus 32 ("sha256 checksum not found"),
//!   since etcd's database is made of pages;
//! - the state's length in bytes, 8 bytes little-endian;
//! - the SHA-256 of everything before it (32 bytes), as etcd follows its
//!   database with its SHA-256.
//!
//! The state is the store's alone, without the node's framing (applied
//! index, member directory): a restore starts a new cluster, with its own
//! members.
//!
//! Owns: writing a backup to a stream, and checking a file's hash.
//! Guarantees: a file whose hash does not match its contents, or one too
//! short to hold a hash, is refused before anything is restored, with the
//! file named. May not touch: the store's format (`store`, `mvcc`).

use super::store::EtcdSnapshot;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of the hash at the end of a backup.
pub const HASH_BYTES: u64 = 32;
/// Bytes of the state's length before the hash.
const LENGTH_BYTES: u64 = 8;
/// The body (all before the hash) is a multiple of this.
const BODY_ALIGNMENT: u64 = 512;

/// Why a backup file cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file cannot be read.
    #[error("reading backup {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// The file cannot hold a state and its hash.
    #[error("backup {path} is {len} bytes: too short to be a backup (state + 32-byte SHA-256)")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The length or the padding before the hash is impossible.
    #[error(
        "backup {path}: the state length {state_len} before the hash does not fit a file of {len} bytes, or the padding is not zeros; the file is damaged or not a ringraft backup"
    )]
    BadTrailer {
        /// The file.
        path: PathBuf,
        /// The length it records.
        state_len: u64,
        /// The file's length.
        len: u64,
    },
    /// The hash does not match: the file is damaged or not a backup.
    #[error(
        "backup {path}: the SHA-256 in its last 32 bytes does not match the {body_len} bytes before them; the file is damaged or not a ringraft backup"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Bytes the hash covers.
        body_len: u64,
    },
}

/// Zero bytes after a state of `state_len` bytes.
fn padding_len(state_len: u64) -> u64 {
    (BODY_ALIGNMENT - (state_len + LENGTH_BYTES) % BODY_ALIGNMENT) % BODY_ALIGNMENT
}

/// Writes `view` as a backup to `out`: the state, then its SHA-256.
/// Returns the bytes written.
pub fn write_backup(view: &EtcdSnapshot, out: &mut dyn Write) -> io::Result<u64> {
    let mut hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        written: 0,
    };
    view.write_to(&mut hashing)?;
    let state_len = hashing.written;
    let zeros = [0u8; BODY_ALIGNMENT as usize];
    let padding = padding_len(state_len) as usize;
    hashing.write_all(&zeros[..padding])?;
    hashing.write_all(&state_len.to_le_bytes())?;
    let HashingWriter {
        inner,
        hasher,
        written,
    } = hashing;
    debug_assert_eq!(written % BODY_ALIGNMENT, 0);
    inner.write_all(&hasher.finalize())?;
    inner.flush()?;
    Ok(written + HASH_BYTES)
}

/// The bytes [`write_backup`] writes for `view`, found by writing it to a
/// counter (nothing is kept).
pub fn backup_len(view: &EtcdSnapshot) -> io::Result<u64> {
    let mut counter = Counter(0);
    view.write_to(&mut counter)?;
    let state_len = counter.0;
    Ok(state_len + padding_len(state_len) + LENGTH_BYTES + HASH_BYTES)
}

/// Checks the backup at `path`; returns the length of its state (the bytes
/// at its start), which the caller reads with `Read::take`.
pub fn check_backup(path: &Path) -> Result<u64, BackupError> {
    let io_error = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    if len < LENGTH_BYTES + HASH_BYTES {
        return Err(BackupError::TooShort {
            path: path.to_path_buf(),
            len,
        });
    }
    let body_len = len - HASH_BYTES;
    let mut hasher = Sha256::new();
    let copied =
        io::copy(&mut (&mut file).take(body_len), &mut HashSink(&mut hasher)).map_err(io_error)?;
    let mut stored = [0u8; HASH_BYTES as usize];
    file.read_exact(&mut stored).map_err(io_error)?;
    if copied != body_len || hasher.finalize().as_slice() != stored {
        return Err(BackupError::HashMismatch {
            path: path.to_path_buf(),
            body_len,
        });
    }
    // The hash holds: the trailer is as written, unless the file was never
    // a backup.
    let mut trailer = [0u8; LENGTH_BYTES as usize];
    file.seek(SeekFrom::Start(body_len - LENGTH_BYTES))
        .map_err(io_error)?;
    file.read_exact(&mut trailer).map_err(io_error)?;
    let state_len = u64::from_le_bytes(trailer);
    let bad_trailer = || BackupError::BadTrailer {
        path: path.to_path_buf(),
        state_len,
        len,
    };
    let padding = body_len - LENGTH_BYTES;
    if state_len > padding || padding - state_len != padding_len(state_len) {
        return Err(bad_trailer());
    }
    let mut zeros = vec![0u8; (padding - state_len) as usize];
    file.seek(SeekFrom::Start(state_len)).map_err(io_error)?;
    file.read_exact(&mut zeros).map_err(io_error)?;
    if zeros.iter().any(|&b| b != 0) {
        return Err(bad_trailer());
    }
    Ok(state_len)
}

/// Passes bytes on and hashes them.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes and drops them.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes bytes and drops them.
struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::store::EtcdStore;
    use crate::state_machine::StateMachine;

    fn backup_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("written");
        file
    }

    #[test]
    fn a_backup_checks_and_restores_and_a_damaged_one_is_refused() {
        let store = EtcdStore::new();
        let view = store.snapshot();
        let mut bytes = Vec::new();
        let written = write_backup(&view, &mut bytes).expect("backup");
        assert_eq!(written, bytes.len() as u64);
        assert_eq!(backup_len(&view).expect("length"), written);
        // What etcdctl 3.4 checks before it keeps a download.
        assert_eq!(written % 512, 32);

        let file = backup_file(&bytes);
        let state_len = check_backup(file.path()).expect("a good backup");
        assert!(state_len > 0 && state_len < written - HASH_BYTES);
        let mut restored = EtcdStore::new();
        restored
            .restore(&mut &bytes[..state_len as usize])
            .expect("the state restores");

        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let file = backup_file(&damaged);
            let error = check_backup(file.path()).expect_err("damaged");
            assert!(
                matches!(error, BackupError::HashMismatch { .. }),
                "byte {at}: {error}"
            );
            assert!(error.to_string().contains("does not match"));
        }
        let short = backup_file(&bytes[..20]);
        assert!(matches!(
            check_backup(short.path()),
            Err(BackupError::TooShort { len: 20, .. })
        ));
        let missing = check_backup(Path::new("/nonexistent/backup.db")).expect_err("missing");
        assert!(missing.to_string().contains("/nonexistent/backup.db"));
    }
}
