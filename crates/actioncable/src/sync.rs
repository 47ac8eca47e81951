//! The crate's one policy on lock poisoning: ignore it.
//!
//! A `std` lock is poisoned when a thread panics while holding it. Every lock in this crate
//! guards a collection that each critical section changes with a single insert, remove or
//! push, and user code (channel callbacks, filters, hooks) never runs while one is held; a
//! panic inside a critical section therefore cannot leave the data half-updated in a way that
//! matters. Refusing to go on would instead turn one contained panic into a dead server. So
//! every lock is taken through these helpers, and `.lock().unwrap()` appears nowhere.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-locks `lock`, poisoned or not.
pub(crate) fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-locks `lock`, poisoned or not.
pub(crate) fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
