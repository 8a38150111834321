//! `SimStore`: the simulated object store, behind the production `ObjectStore` trait.
//!
//! Like [`crate::kv::SimKv`], one store is shared and each client has its own handle.
//! Every call is a yield point whose fate was decided when it was made: a latency (with
//! tails), and possibly a 5xx (not applied), a timeout (a long delay, then an error;
//! applied or not) or a lost response (applied, but the client sees an error). Objects
//! that were stored are durable: a system crash does not touch the store.

use crate::faults::{Failure, Service};
use crate::plant::Plant;
use crate::trace::Fnv;
use crate::world::{Step, World};
use ferrofs_s3_backend::{validate_key, Bytes, ObjectInfo, ObjectStore, StoreError, TransientKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// Share of puts the planted `lost-object-put` bug drops.
const LOST_PUT_RATE: f64 = 0.02;

/// The store's objects.
#[derive(Debug, Default)]
pub struct StoreState {
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Keys of objects that were deleted.
    deleted: BTreeSet<String>,
    /// Per client: reads that found an object gone because it had been deleted (a read
    /// racing gc), as opposed to one that never existed.
    gone_reads: BTreeMap<usize, u64>,
}

impl StoreState {
    /// Reads by `client` that found a deleted object.
    pub fn gone_reads(&self, client: usize) -> u64 {
        self.gone_reads.get(&client).copied().unwrap_or(0)
    }
}

/// One client's handle on the simulated store.
pub struct SimStore {
    world: Arc<World>,
    me: usize,
}

impl SimStore {
    pub fn new(world: &Arc<World>, me: usize) -> SimStore {
        SimStore {
            world: world.clone(),
            me,
        }
    }
}

impl fmt::Debug for SimStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimStore(client {})", self.me)
    }
}

/// The error a client sees for an injected failure: transient, as an S3 client reports
/// it, so the production retry loop (`RetryingStore`) retries it.
fn injected(op: &'static str, key: &str, failure: Failure) -> StoreError {
    let (kind, what) = match failure {
        Failure::Error => (TransientKind::Throttle, "503 Slow Down (simulated)"),
        Failure::Timeout { .. } => (TransientKind::Timeout, "request timed out (simulated)"),
        _ => (
            TransientKind::Connection,
            "connection reset before the response (simulated)",
        ),
    };
    StoreError::unavailable(op, key, kind, what)
}

fn note(failure: Failure) -> &'static str {
    match failure {
        Failure::None => "ok",
        Failure::Error => "5xx",
        Failure::Timeout { applied: true } => "timeout (applied)",
        Failure::Timeout { applied: false } => "timeout",
        Failure::LostResponse => "lost response",
        Failure::Corrupt => "corrupt response",
        Failure::MetaEio => "EIO",
    }
}

impl ObjectStore for SimStore {
    fn describe(&self) -> String {
        "sim://store".to_string()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let drop_some = self.world.plant() == Some(Plant::LostObjectPut);
        self.world
            .call(self.me, Service::Store, "s3.put", |st, failure| {
                if let Some(p) = st.put_last.get_mut(self.me) {
                    *p = true;
                }
                let mut n = note(failure);
                if failure.is_error() {
                    st.abandoned_uploads += 1;
                }
                if failure.applied() {
                    if drop_some && st.rng.chance(LOST_PUT_RATE) {
                        n = "ok (planted: dropped)";
                    } else {
                        st.store.objects.insert(key.to_string(), data.to_vec());
                    }
                }
                let code = Fnv::default().data(&data).finish();
                let r = match failure {
                    Failure::None => Ok(()),
                    f => Err(injected("put", key, f)),
                };
                Step::new(r, key.as_bytes().to_vec(), code, n)
            })
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        validate_key(key)?;
        let me = self.me;
        self.world
            .call(self.me, Service::Store, "s3.get", |st, failure| {
                if failure.is_error() && failure != Failure::Corrupt {
                    let e = injected("get", key, failure);
                    return Step::new(Err(e), key.as_bytes().to_vec(), 1, note(failure));
                }
                let Some(data) = st.store.objects.get(key) else {
                    if st.store.deleted.contains(key) {
                        *st.store.gone_reads.entry(me).or_default() += 1;
                    }
                    let e = StoreError::NotFound(key.to_string());
                    return Step::new(Err(e), key.as_bytes().to_vec(), 2, "not found");
                };
                let start = offset.min(data.len() as u64) as usize;
                let end = match len {
                    Some(n) => (start as u64).saturating_add(n).min(data.len() as u64) as usize,
                    None => data.len(),
                };
                let mut out = data[start..end].to_vec();
                if failure == Failure::Corrupt && !out.is_empty() {
                    let bit = st.rng.index(out.len() * 8);
                    out[bit / 8] ^= 1 << (bit % 8);
                }
                let code = Fnv::default().data(&out).u64(offset).finish();
                Step::new(Ok(out), key.as_bytes().to_vec(), code, note(failure))
            })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        validate_key(key)?;
        self.world
            .call(self.me, Service::Store, "s3.head", |st, failure| {
                if failure.is_error() {
                    let e = injected("head", key, failure);
                    return Step::new(Err(e), key.as_bytes().to_vec(), 1, note(failure));
                }
                let info = st.store.objects.get(key).map(|d| ObjectInfo {
                    key: key.to_string(),
                    size: d.len() as u64,
                    modified: None,
                });
                let code = info.as_ref().map(|i| i.size + 10).unwrap_or(0);
                Step::new(Ok(info), key.as_bytes().to_vec(), code, "ok")
            })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.world
            .call(self.me, Service::Store, "s3.delete", |st, failure| {
                if failure.applied() && st.store.objects.remove(key).is_some() {
                    st.store.deleted.insert(key.to_string());
                }
                let r = match failure {
                    Failure::None => Ok(()),
                    f => Err(injected("delete", key, f)),
                };
                Step::new(r, key.as_bytes().to_vec(), 0, note(failure))
            })
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.world
            .call(self.me, Service::Store, "s3.list", |st, failure| {
                if failure.is_error() {
                    let e = injected("list", prefix, failure);
                    return Step::new(Err(e), prefix.as_bytes().to_vec(), 1, note(failure));
                }
                let from = if start_after > prefix {
                    Bound::Excluded(start_after)
                } else {
                    Bound::Included(prefix)
                };
                let out: Vec<ObjectInfo> = st
                    .store
                    .objects
                    .range::<str, _>((from, Bound::Unbounded))
                    .filter(|(k, _)| k.as_str() > start_after)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, d)| ObjectInfo {
                        key: k.clone(),
                        size: d.len() as u64,
                        modified: None,
                    })
                    .collect();
                let code = out.len() as u64;
                Step::new(Ok(out), prefix.as_bytes().to_vec(), code, "ok")
            })
    }
}
