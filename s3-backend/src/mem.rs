//! An object store in memory, for tests and the simulator.

use crate::error::StoreError;
use crate::key::validate_key;
use crate::{Bytes, ObjectInfo, ObjectStore};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Mutex;

/// Objects in a `BTreeMap` behind a lock; nothing survives the process.
#[derive(Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-updated map (every update
        // is one insert or remove), so a poisoned lock is safe to keep using.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemStore({} objects)", self.map().len())
    }
}

impl ObjectStore for MemStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.map().insert(key.to_string(), data.to_vec());
        Ok(())
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        validate_key(key)?;
        let map = self.map();
        let data = map
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        let start = offset.min(data.len() as u64);
        let end = match len {
            Some(n) => start.saturating_add(n).min(data.len() as u64),
            None => data.len() as u64,
        };
        Ok(data[start as usize..end as usize].to_vec())
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        validate_key(key)?;
        Ok(self.map().get(key).map(|d| ObjectInfo {
            key: key.to_string(),
            size: d.len() as u64,
            modified: None,
        }))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.map().remove(key);
        Ok(())
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let map = self.map();
        let from = if start_after > prefix {
            Bound::Excluded(start_after)
        } else {
            Bound::Included(prefix)
        };
        Ok(map
            .range::<str, _>((from, Bound::Unbounded))
            .filter(|(k, _)| k.as_str() > start_after)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, d)| ObjectInfo {
                key: k.clone(),
                size: d.len() as u64,
                modified: None,
            })
            .collect())
    }
}
