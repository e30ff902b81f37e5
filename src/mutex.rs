//! Locking the plain-data mutexes that tasks share (tenant states, metric tables, commit
//! feeds). A leaf module any layer may use; must not import anything of dirsync.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A poisoned lock only means another task panicked mid-update of plain data; keep going
/// rather than take the whole daemon down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
