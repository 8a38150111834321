//! The client's metadata cache applied: lookups, attributes and listing pages served
//! from `core::cache::meta::MetaCache` while fresh, and every change this client makes
//! invalidating what it touched before it returns (so it always sees its own changes).
//! Every read from the engine takes a ticket first and caches what it read only if
//! nothing was invalidated meanwhile (`core::cache::meta::ReadTicket`).
//! What other clients may see stale, and for how long, is in ARCHITECTURE.md
//! ("Metadata caches").

use super::Vfs;
use ferrofs_core::cache::meta::{CachedEntry, MetaCache, ReadTicket};
use ferrofs_core::meta::perm::{check, is_dot, X_OK};
use ferrofs_core::{Attr, Ctx, DirEntry, Errno, FileType, Ino, Result};
use std::sync::MutexGuard;

impl Vfs {
    /// Now, in nanoseconds since the epoch (the cache's time scale).
    pub(super) fn now_ns(&self) -> u64 {
        let t = self.now();
        (t.sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.nsec as u64)
    }

    pub(super) fn mc(&self) -> MutexGuard<'_, MetaCache> {
        self.meta_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long an open file's slice lists are used: the attribute TTL as it is now
    /// (shorter while the change feed is out of sync).
    pub(super) fn slice_ttl(&self) -> u64 {
        self.mc().ttl().attr
    }

    /// Take one before asking the engine for anything the cache will keep.
    pub(super) fn ticket(&self) -> ReadTicket {
        self.mc().ticket()
    }

    /// Committed attributes of `ino`: from the cache while fresh, else from the engine.
    pub(super) fn committed_attr(&self, ino: Ino) -> Result<Attr> {
        let now = self.now_ns();
        let ticket = {
            let mc = self.mc();
            if let Some(a) = mc.attr(ino, now) {
                return Ok(a);
            }
            mc.ticket()
        };
        let a = self.meta.getattr(ino)?;
        self.mc().put_attr(a.clone(), now, ticket);
        Ok(a)
    }

    /// Committed attributes read at most the open-cache TTL ago, if any.
    pub(super) fn open_cached_attr(&self, ino: Ino) -> Option<Attr> {
        let ttl = self.config.open_cache_ns;
        (ttl > 0).then(|| self.mc().attr_within(ino, self.now_ns(), ttl))?
    }

    /// Caches attributes read from the engine after `ticket` was taken.
    pub(super) fn remember_attr(&self, attr: &Attr, ticket: ReadTicket) {
        let now = self.now_ns();
        self.mc().put_attr(attr.clone(), now, ticket);
    }

    fn remember_entry(&self, parent: Ino, name: &[u8], attr: &Attr, ticket: ReadTicket) {
        let now = self.now_ns();
        let mut mc = self.mc();
        mc.put_entry(parent, name, CachedEntry::Found(attr.ino), now, ticket);
        mc.put_attr(attr.clone(), now, ticket);
    }

    /// This client changed `ino` (the change returned `r`): forgets what was cached
    /// of it, and caches the new attributes unless something else was invalidated
    /// since `ticket`, taken before the change.
    pub(super) fn changed_attr(
        &self,
        ino: Ino,
        r: Result<Attr>,
        ticket: ReadTicket,
    ) -> Result<Attr> {
        let now = self.now_ns();
        let mut mc = self.mc();
        let unchanged = mc.still_valid(ticket);
        mc.forget_attr(ino);
        let attr = r?;
        if unchanged {
            let t = mc.ticket();
            mc.put_attr(attr.clone(), now, t);
        }
        Ok(attr)
    }

    /// This client created `name` in `parent` (the change returned `r`, taking
    /// `ticket` before it): the directory changed; the name, and the inode it names,
    /// are cached unless something else was invalidated meanwhile.
    pub(super) fn created(
        &self,
        parent: Ino,
        name: &[u8],
        r: Result<Attr>,
        ticket: ReadTicket,
    ) -> Result<Attr> {
        let now = self.now_ns();
        let mut mc = self.mc();
        let unchanged = mc.still_valid(ticket);
        forget_name(&mut mc, parent, name, now);
        let attr = r?;
        // A new hard link changed the inode too.
        mc.forget_attr(attr.ino);
        if unchanged {
            let t = mc.ticket();
            mc.put_entry(parent, name, CachedEntry::Found(attr.ino), now, t);
            mc.put_attr(attr.clone(), now, t);
        }
        Ok(attr)
    }

    pub(super) fn forget_attr(&self, ino: Ino) {
        self.mc().forget_attr(ino);
    }

    /// A directory's attributes or listing changed.
    pub(super) fn dir_changed(&self, ino: Ino) {
        self.mc().dir_changed(ino);
    }

    /// `name` in `parent` was created, removed or replaced: forget it, the inode it
    /// named, and the directory's attributes and listings.
    pub(super) fn name_changed(&self, parent: Ino, name: &[u8]) {
        let now = self.now_ns();
        forget_name(&mut self.mc(), parent, name, now);
    }

    /// Answers a lookup from the cache: `None` when it has to ask the engine.
    fn lookup_cached(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Option<Result<Attr>> {
        if is_dot(name) {
            return None;
        }
        let now = self.now_ns();
        let mc = self.mc();
        let p = mc.attr(parent, now)?;
        if p.kind != FileType::Directory {
            return None;
        }
        let entry = mc.entry(parent, name, now)?;
        // The engine would check search permission on the parent: so does the cache.
        if let Err(e) = check(ctx, &p, X_OK) {
            return Some(Err(e));
        }
        match entry {
            CachedEntry::Missing => Some(Err(Errno::ENOENT)),
            CachedEntry::Found(ino) => mc.attr(ino, now).map(Ok),
        }
    }

    /// `lookup` through the cache; a miss asks the engine and caches the answer
    /// (negative answers too, if the negative TTL allows).
    pub(super) fn lookup_committed(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        if let Some(r) = self.lookup_cached(ctx, parent, name) {
            return r;
        }
        let ticket = self.ticket();
        let r = self.meta.lookup(ctx, parent, name);
        if is_dot(name) {
            return r;
        }
        let now = self.now_ns();
        match &r {
            Ok(a) => self.remember_entry(parent, name, a, ticket),
            Err(Errno::ENOENT) => {
                self.mc()
                    .put_entry(parent, name, CachedEntry::Missing, now, ticket)
            }
            Err(_) => {}
        }
        // Later lookups in this directory need its attributes (for the permission
        // check) to be answered from the cache.
        if r.is_ok() && self.mc().attr(parent, now).is_none() {
            let _ = self.committed_attr(parent);
        }
        r
    }

    /// A cached listing page. Attributes are not kept in pages (a change to a file
    /// would not reach them): they come from the attribute cache, and if any is
    /// missing there, the page is read again.
    fn cached_page(
        &self,
        ino: Ino,
        offset: u64,
        plus: bool,
        limit: u32,
        now: u64,
    ) -> Option<Vec<DirEntry>> {
        let mc = self.mc();
        let mut page = mc.page(ino, offset, plus, limit, now)?.to_vec();
        if plus {
            for e in page.iter_mut() {
                e.attr = Some(mc.attr(e.ino, now)?);
            }
        }
        Some(page)
    }

    /// A listing page through the cache; with attributes (`plus`), its entries and
    /// attributes are cached for the lookups and getattrs that follow (`ls -l`).
    pub(super) fn readdir_committed(
        &self,
        ctx: &Ctx,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        let now = self.now_ns();
        let lim = limit.min(u32::MAX as usize) as u32;
        if let Some(page) = self.cached_page(ino, offset, plus, lim, now) {
            return Ok(page);
        }
        let ticket = self.ticket();
        let page = self.meta.readdir(ctx, ino, offset, limit, plus)?;
        let mut mc = self.mc();
        if mc.ttl().dir > 0 || mc.ttl().entry > 0 {
            for e in &page {
                if !is_dot(&e.name) {
                    mc.put_entry(ino, &e.name, CachedEntry::Found(e.ino), now, ticket);
                }
                if let Some(a) = &e.attr {
                    mc.put_attr(a.clone(), now, ticket);
                }
            }
        }
        let names = page
            .iter()
            .map(|e| DirEntry {
                attr: None,
                ..e.clone()
            })
            .collect();
        mc.put_page(ino, offset, plus, lim, names, now, ticket);
        Ok(page)
    }
}

/// Forgets `name` in `parent`, the inode it named, and the directory's attributes and
/// listings.
fn forget_name(mc: &mut MetaCache, parent: Ino, name: &[u8], now: u64) {
    if let Some(CachedEntry::Found(ino)) = mc.entry(parent, name, now) {
        mc.forget_attr(ino);
    }
    mc.forget_entry(parent, name);
    mc.dir_changed(parent);
}
