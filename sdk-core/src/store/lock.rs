//! One client per storage directory, enforced with an OS file lock.
//!
//! The lock file is `<storage_dir>/tributary.lock`. `File::try_lock` takes an
//! exclusive advisory lock (`flock` on Unix) tied to the open file, so a second
//! client in the same process or in another process gets a clear error, while
//! clients on different directories never interact. The OS releases the lock
//! when the process dies, so a SIGKILLed app never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::TributaryError;

/// Name of the lock file inside the storage directory.
pub(crate) const LOCK_FILE_NAME: &str = "tributary.lock";

/// Holds the directory lock until dropped.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Creates the directory if needed and takes its lock without waiting.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, TributaryError> {
        let unavailable = |path: &Path, cause: String| TributaryError::StorageUnavailable {
            path: path.display().to_string(),
            cause,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(dir, format!("cannot create the directory: {e}")))?;
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable(&path, format!("cannot open the lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(unavailable(
                dir,
                "another Tributary client already uses this storage directory \
                 (in this process or another); shut it down first or give each client its own storage_dir"
                    .into(),
            )),
            Err(TryLockError::Error(e)) => {
                Err(unavailable(&path, format!("cannot lock the lock file: {e}")))
            }
        }
    }

    /// Path of the lock file.
    #[allow(dead_code)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_fails_and_release_frees_it() {
        let dir = std::env::temp_dir().join(format!("tributary-lock-{}", uuid::Uuid::now_v7()));
        let first = StoreLock::acquire(&dir).unwrap();
        let err = StoreLock::acquire(&dir).unwrap_err();
        assert!(matches!(err, TributaryError::StorageUnavailable { .. }));
        assert!(err.to_string().contains("another Tributary client"));
        drop(first);
        let _again = StoreLock::acquire(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
