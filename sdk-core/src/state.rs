//! The consent and identity file, kept apart from the queue database.
//!
//! `<storage_dir>/tributary.state.json` holds the opt-out choice, the
//! anonymous id and the user id:
//!
//! ```json
//! {"version":1,"enabled":false,"anonymous_id":"…","user_id":"u-1",
//!  "profile":{"super_properties":{…},"traits":{…},"session":{"id":…,"background_since_ms":null},
//!             "app":{"version":"1.2","build":"12"}}}
//! ```
//!
//! `profile` (super-properties, traits, the session, the app version of the last
//! launch: module `profile`) is
//! absent from files written before it existed, and read as empty then.
//!
//! Why a separate file: the queue database can be found corrupt and replaced,
//! or lost; the user's opt-out must not go with it, or a corrupt queue would
//! silently turn tracking back on. The file is tiny and rewritten whole,
//! atomically: written to `tributary.state.json.tmp`, fsynced, renamed over
//! the old one, and the directory fsynced, so after a crash or power loss it
//! holds either the old or the new state, never a torn one.
//!
//! A directory without the file (an install from before this file existed)
//! takes the choice and identity from the database's `meta` table once.
//! A file that exists but cannot be parsed (it should never happen given the
//! atomic writes) is read as *opted out*: when in doubt, do not track. A file
//! that cannot be read at all for now (an I/O error: on iOS, data protection
//! before the first unlock) is neither: the writer thread, which reads the
//! file, retries, and nothing is stored or sent until it has read it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Identity;
use crate::profile::Profile;

/// Name of the state file inside the storage directory.
pub(crate) const STATE_FILE_NAME: &str = "tributary.state.json";

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// Format version, for later changes.
    pub version: u32,
    /// False once the user opted out.
    pub enabled: bool,
    /// The installation's anonymous id.
    pub anonymous_id: String,
    /// The user id set by `identify` or `alias`.
    pub user_id: Option<String>,
    /// Whose event sequence `seq_reserved` is about (an anonymous id).
    #[serde(default)]
    pub seq_owner: Option<String>,
    /// Sequence numbers up to this one may have been given to `seq_owner`'s
    /// events. Reserved here, in blocks, before they are used: should the
    /// database (which holds the exact next number) be lost, numbering goes
    /// on after this, so a number is never given twice and the gap shows
    /// the loss.
    #[serde(default)]
    pub seq_reserved: u64,
    /// Super-properties, traits and the session (module `profile`).
    #[serde(default)]
    pub profile: Profile,
}

impl State {
    /// The state for `identity`, `enabled` and a sequence reservation.
    pub fn new(identity: &Identity, enabled: bool, reservation: &Reservation) -> Self {
        Self {
            version: 1,
            enabled,
            anonymous_id: identity.anonymous_id.clone(),
            user_id: identity.user_id.clone(),
            seq_owner: reservation.owner.clone(),
            seq_reserved: reservation.up_to,
            profile: Profile::default(),
        }
    }

    /// The identity part.
    pub fn identity(&self) -> Identity {
        Identity {
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
        }
    }
}

/// Sequence numbers reserved in the state file (see `State::seq_reserved`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub owner: Option<String>,
    pub up_to: u64,
}

/// What reading the file found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// A valid state.
    Found(State),
    /// No file: a new install or one from before the file existed.
    Missing,
    /// A file that cannot be parsed; the reason, for the log.
    Unreadable(String),
    /// A file that cannot be read now (an I/O error); the reason, for the log.
    Unavailable(String),
}

/// The state file of one storage directory.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl StateFile {
    /// The state file of `dir` (not read yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(STATE_FILE_NAME),
            tmp: dir.join(format!("{STATE_FILE_NAME}.tmp")),
            dir: dir.to_path_buf(),
        }
    }

    /// Reads the file. An I/O error other than "not found" is `Unavailable`.
    pub fn load(&self) -> Loaded {
        match std::fs::read(&self.path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) => Loaded::Found(state),
                Err(e) => Loaded::Unreadable(format!("{}: {e}", self.path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Loaded::Missing,
            Err(e) => Loaded::Unavailable(format!("{}: {e}", self.path.display())),
        }
    }

    /// Replaces the file atomically (temp file, fsync, rename, directory fsync).
    pub fn store(&self, state: &State) -> std::io::Result<()> {
        let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(&self.tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        // The rename is durable only once the directory entry is; on
        // platforms where a directory cannot be opened this is best effort.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_torn_file_reads_as_unreadable() {
        let dir = tempfile_dir();
        let file = StateFile::new(&dir);
        assert!(matches!(file.load(), Loaded::Missing));
        let state = State::new(
            &Identity {
                anonymous_id: "a".into(),
                user_id: Some("u".into()),
            },
            false,
            &Reservation {
                owner: Some("a".into()),
                up_to: 10_000,
            },
        );
        file.store(&state).unwrap();
        match file.load() {
            Loaded::Found(found) => assert_eq!(found, state),
            other => panic!("{other:?}"),
        }
        assert!(!dir.join(format!("{STATE_FILE_NAME}.tmp")).exists());
        std::fs::write(dir.join(STATE_FILE_NAME), b"{\"version\":1,\"ena").unwrap();
        assert!(matches!(file.load(), Loaded::Unreadable(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tributary-state-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
