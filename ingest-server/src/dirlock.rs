//! Exclusive locks on the data directory, one per role: two servers on one data
//! directory would interleave their logs and checkpoints, and two imports would
//! settle each other's in-flight objects. The lock is an OS file lock, so it is
//! released when the process dies, SIGKILL included: no stale lock to clean up.

use std::fs::File;
use std::path::Path;

use anyhow::Context;

/// Holds `<data_dir>/<role>.lock` until dropped, or says who holds it.
pub fn hold(data_dir: &Path, role: &str) -> anyhow::Result<File> {
    let path = data_dir.join(format!("{role}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `ingest-server{}` is running on the data directory {} ({} is locked); stop it first, or use another --data-dir",
            if role == "server" {
                String::new()
            } else {
                format!(" {role}")
            },
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::hold(dir.path(), "import").unwrap();
        let err = super::hold(dir.path(), "import").unwrap_err().to_string();
        assert!(
            err.contains("another `ingest-server import` is running"),
            "{err}"
        );
        assert!(super::hold(dir.path(), "server").is_ok());
        drop(first);
        assert!(super::hold(dir.path(), "import").is_ok());
    }
}
