//! The replica rules of the state machine in the [`crate::store`] docs, as pure
//! functions of what is stored: the store applies them on disk, and the cluster
//! simulator applies the very same functions to its in-memory chunkservers, so a change
//! to a rule is exercised by both.

use crate::error::{Error, Result};

/// What a chunkserver holds for one handle, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Version of the replica.
    pub version: u64,
    /// Finalized (complete), as opposed to being written.
    pub finalized: bool,
    /// Known corrupt.
    pub corrupt: bool,
}

/// Whether a write or copy of `handle` at `version` may replace `held`: a replica being
/// written, a corrupt one, or a finalized one of an older version; never a newer one (a
/// frozen node's queued write after a recovery moved on), nor a good finalized replica
/// of the same version (the copy is already here).
///
/// # Errors
/// [`Error::NewerStored`]; [`Error::AlreadyExists`].
pub fn may_write(handle: u64, held: Option<Held>, version: u64) -> Result<()> {
    let Some(old) = held else { return Ok(()) };
    if old.version > version {
        return Err(Error::NewerStored { handle, stored: old.version, requested: version });
    }
    if old.finalized && !old.corrupt && old.version == version {
        return Err(Error::AlreadyExists { handle, version: old.version });
    }
    Ok(())
}

/// Whether a pipeline recovery (`WriteHeader.resume_offset`) at `version` may reopen
/// `held`: a replica being written at an older or the same version, or a *finalized*
/// one only at a newer version. Only the master moves versions, and only for the lease
/// holder of a chunk being written (`UpdatePipeline`, whose write token names the new
/// version), so a finalized replica is never reopened, cut or overwritten through a
/// write stream at its own version; older-version rules are `resume_rbw`'s.
///
/// # Errors
/// [`Error::Finalized`].
pub fn may_resume(handle: u64, held: Held, version: u64) -> Result<()> {
    if held.finalized && held.version >= version {
        return Err(Error::Finalized {
            handle,
            what: "reopen",
            stored: held.version,
            requested: version,
        });
    }
    Ok(())
}

/// Whether lease recovery's `FinalizeReplica` at `version` may cut and finalize
/// `held`: only a replica that `RecoverReplica` stamped with that very version (both
/// orders carry the master's recover token for it). A replica at any other version is
/// not the one this recovery fenced, and is left alone.
///
/// # Errors
/// [`Error::Finalized`] for a finalized replica, [`Error::InvalidArgument`] otherwise.
pub fn may_settle(handle: u64, held: Held, version: u64) -> Result<()> {
    if held.version == version {
        return Ok(());
    }
    if held.finalized {
        return Err(Error::Finalized {
            handle,
            what: "cut",
            stored: held.version,
            requested: version,
        });
    }
    Err(Error::InvalidArgument(format!(
        "chunk {handle:016x}: cannot settle version {version}: replica holds version {}",
        held.version
    )))
}

/// Whether a delete naming `version` (and `rbw_only`) removes `held`: a lower version,
/// or this version unless the delete is for a replica being written and this one is
/// finalized. A delete decided on old news never removes a replica written since.
pub fn delete_removes(held: Held, version: u64, rbw_only: bool) -> bool {
    !(held.version > version || (held.version == version && rbw_only && held.finalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(version: u64, finalized: bool) -> Held {
        Held { version, finalized, corrupt: false }
    }

    #[test]
    fn writes_never_replace_newer_or_equal_good_replicas() {
        assert!(may_write(1, None, 1).is_ok());
        assert!(may_write(1, Some(held(1, false)), 1).is_ok(), "a failed write of it");
        assert!(may_write(1, Some(held(1, true)), 2).is_ok(), "an older finalized one");
        assert!(matches!(may_write(1, Some(held(3, false)), 2), Err(Error::NewerStored { .. })));
        assert!(matches!(may_write(1, Some(held(2, true)), 2), Err(Error::AlreadyExists { .. })));
        let corrupt = Held { corrupt: true, ..held(2, true) };
        assert!(may_write(1, Some(corrupt), 2).is_ok(), "a corrupt one is replaced");
    }

    #[test]
    fn finalized_replicas_are_reopened_only_at_a_newer_version() {
        assert!(may_resume(1, held(1, false), 1).is_ok(), "this pipeline's own replica");
        assert!(may_resume(1, held(1, false), 2).is_ok());
        assert!(may_resume(1, held(1, true), 2).is_ok(), "last packet in, ack lost");
        assert!(matches!(may_resume(1, held(2, true), 2), Err(Error::Finalized { .. })));
        assert!(matches!(may_resume(1, held(3, true), 2), Err(Error::Finalized { .. })));
    }

    #[test]
    fn settling_needs_the_version_recovery_stamped() {
        assert!(may_settle(1, held(4, true), 4).is_ok());
        assert!(may_settle(1, held(4, false), 4).is_ok());
        assert!(matches!(may_settle(1, held(3, true), 4), Err(Error::Finalized { .. })));
        assert!(matches!(may_settle(1, held(5, true), 4), Err(Error::Finalized { .. })));
        assert!(matches!(may_settle(1, held(3, false), 4), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn deletes_never_remove_newer_replicas() {
        assert!(delete_removes(held(1, true), 1, false));
        assert!(delete_removes(held(1, true), u64::MAX, false));
        assert!(!delete_removes(held(2, true), 1, false));
        assert!(!delete_removes(held(2, true), 2, true), "rbw-only spares a finalized one");
        assert!(delete_removes(held(2, false), 2, true));
    }
}
