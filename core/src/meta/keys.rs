//! Builders for the metadata keys of ARCHITECTURE.md ("Metadata key layout"). Integers
//! are big-endian so that key order is numeric order.

use crate::types::{ChunkIndex, Ino, SliceId};

pub const SETTING: &[u8] = b"setting";

pub const NEXT_INODE: &str = "nextInode";
pub const NEXT_SLICE: &str = "nextSlice";
pub const USED_SPACE: &str = "usedSpace";
pub const TOTAL_INODES: &str = "totalInodes";
pub const NEXT_SESSION: &str = "nextSession";

/// `C` + name: a u64 counter.
pub fn counter(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'C');
    k.extend_from_slice(name.as_bytes());
    k
}

fn inode_key(ino: Ino, tag: u8, extra: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + extra.len());
    k.push(b'A');
    k.extend_from_slice(&ino.0.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(extra);
    k
}

/// `[A ino, A ino+1)`: every key of an inode.
pub fn inode_range(ino: Ino) -> (Vec<u8>, Vec<u8>) {
    let mut start = vec![b'A'];
    start.extend_from_slice(&ino.0.to_be_bytes());
    let end = match ino.0.checked_add(1) {
        Some(next) => {
            let mut e = vec![b'A'];
            e.extend_from_slice(&next.to_be_bytes());
            e
        }
        None => b"B".to_vec(),
    };
    (start, end)
}

/// The tag byte (`I`, `D`, `E`, `C`, `K`, `S`, `X`) of an inode key.
pub fn tag_of(key: &[u8]) -> Option<u8> {
    key.get(9).copied()
}

/// `A ino I`: the inode's attributes.
pub fn attr(ino: Ino) -> Vec<u8> {
    inode_key(ino, b'I', &[])
}

/// `A ino D name`: a directory entry.
pub fn dentry(parent: Ino, name: &[u8]) -> Vec<u8> {
    inode_key(parent, b'D', name)
}

/// `[A ino D, A ino E)`: every entry of a directory, by name.
pub fn dentry_range(parent: Ino) -> (Vec<u8>, Vec<u8>) {
    (inode_key(parent, b'D', &[]), inode_key(parent, b'E', &[]))
}

/// `A ino E seq`: the readdir order index.
pub fn dir_index(parent: Ino, seq: u64) -> Vec<u8> {
    inode_key(parent, b'E', &seq.to_be_bytes())
}

/// The end (exclusive) of directory `parent`'s `E` keys.
pub fn dir_index_end(parent: Ino) -> Vec<u8> {
    inode_key(parent, b'F', &[])
}

/// The seq of an `E` key of directory `parent`.
pub fn seq_of_dir_index(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(10..18)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// `A ino C chunk`: a chunk's slice list.
pub fn chunk(ino: Ino, index: ChunkIndex) -> Vec<u8> {
    inode_key(ino, b'C', &index.0.to_be_bytes())
}

/// `[A ino C from, A ino D)`: the chunk keys from chunk `from` on.
pub fn chunk_range_from(ino: Ino, from: u64) -> (Vec<u8>, Vec<u8>) {
    let start = if from > u32::MAX as u64 {
        inode_key(ino, b'D', &[])
    } else {
        chunk(ino, ChunkIndex(from as u32))
    };
    (start, inode_key(ino, b'D', &[]))
}

/// The chunk index of a chunk key.
pub fn chunk_index_of(key: &[u8]) -> Option<ChunkIndex> {
    let b: [u8; 4] = key.get(10..14)?.try_into().ok()?;
    Some(ChunkIndex(u32::from_be_bytes(b)))
}

/// `A ino S`: the symlink target.
pub fn symlink(ino: Ino) -> Vec<u8> {
    inode_key(ino, b'S', &[])
}

/// `A ino X name`: an extended attribute.
pub fn xattr(ino: Ino, name: &[u8]) -> Vec<u8> {
    inode_key(ino, b'X', name)
}

/// `[A ino X, A ino Y)`: every extended attribute of an inode.
pub fn xattr_range(ino: Ino) -> (Vec<u8>, Vec<u8>) {
    (inode_key(ino, b'X', &[]), inode_key(ino, b'Y', &[]))
}

/// `A ino K session owner`: the byte-range locks one lock owner of one session holds
/// on the inode (see `locks`).
pub fn lock(ino: Ino, session: u64, owner: u64) -> Vec<u8> {
    let mut extra = [0u8; 16];
    extra[..8].copy_from_slice(&session.to_be_bytes());
    extra[8..].copy_from_slice(&owner.to_be_bytes());
    inode_key(ino, b'K', &extra)
}

/// `[A ino K, A ino L)`: every lock on an inode.
pub fn lock_range(ino: Ino) -> (Vec<u8>, Vec<u8>) {
    (inode_key(ino, b'K', &[]), inode_key(ino, b'L', &[]))
}

/// `[A ino K session, A ino K session+1)`: the locks of one session on an inode.
pub fn session_lock_range(ino: Ino, session: u64) -> (Vec<u8>, Vec<u8>) {
    let start = inode_key(ino, b'K', &session.to_be_bytes());
    let end = match session.checked_add(1) {
        Some(next) => inode_key(ino, b'K', &next.to_be_bytes()),
        None => inode_key(ino, b'L', &[]),
    };
    (start, end)
}

/// (session, owner) of an `A ino K` key.
pub fn lock_owner_of(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 26 {
        return None;
    }
    let s: [u8; 8] = key[10..18].try_into().ok()?;
    let o: [u8; 8] = key[18..26].try_into().ok()?;
    Some((u64::from_be_bytes(s), u64::from_be_bytes(o)))
}

/// Offset of the name in an `X` (or `D`) key.
pub const NAME_OFFSET: usize = 10;

/// `G slice`: a slice queued for deletion.
pub fn gc(id: SliceId) -> Vec<u8> {
    let mut k = vec![b'G'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// `[G, H)`: the gc queue.
pub fn gc_range() -> (Vec<u8>, Vec<u8>) {
    (b"G".to_vec(), b"H".to_vec())
}

/// `W slice`: a slice whose blocks a writeback client staged and has not uploaded
/// yet; gc leaves it alone until the key is gone.
pub fn staged(id: SliceId) -> Vec<u8> {
    let mut k = vec![b'W'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// `U ino`: an inode unlinked while open.
pub fn unlinked(ino: Ino) -> Vec<u8> {
    let mut k = vec![b'U'];
    k.extend_from_slice(&ino.0.to_be_bytes());
    k
}

/// `[U, V)`: every unlinked-but-open inode.
pub fn unlinked_range() -> (Vec<u8>, Vec<u8>) {
    (b"U".to_vec(), b"V".to_vec())
}

/// `H session`: a session's info.
pub fn session(id: u64) -> Vec<u8> {
    let mut k = vec![b'H'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `[H, I)`: every session.
pub fn session_range() -> (Vec<u8>, Vec<u8>) {
    (b"H".to_vec(), b"I".to_vec())
}

/// `L session`: when the session's client last said it is alive (seconds, u64).
pub fn session_alive(id: u64) -> Vec<u8> {
    let mut k = vec![b'L'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `[L, M)`: every session's last heartbeat.
pub fn session_alive_range() -> (Vec<u8>, Vec<u8>) {
    (b"L".to_vec(), b"M".to_vec())
}

/// `K session ino`: the session holds some lock on the inode (an index of the `A ino K
/// session` keys, so that a dead session's locks are found without a scan of every
/// inode).
pub fn held(session: u64, ino: Ino) -> Vec<u8> {
    let mut k = vec![b'K'];
    k.extend_from_slice(&session.to_be_bytes());
    k.extend_from_slice(&ino.0.to_be_bytes());
    k
}

/// `[K, L)`: every session's held-lock index.
pub fn held_range() -> (Vec<u8>, Vec<u8>) {
    (b"K".to_vec(), b"L".to_vec())
}

/// `[K session, K session+1)`: the inodes a session holds locks on.
pub fn session_held_range(session: u64) -> (Vec<u8>, Vec<u8>) {
    let mut start = vec![b'K'];
    start.extend_from_slice(&session.to_be_bytes());
    let end = match session.checked_add(1) {
        Some(next) => {
            let mut e = vec![b'K'];
            e.extend_from_slice(&next.to_be_bytes());
            e
        }
        None => b"L".to_vec(),
    };
    (start, end)
}

/// (session, ino) of a `K` key.
pub fn held_of(key: &[u8]) -> Option<(u64, Ino)> {
    if key.len() != 17 || key[0] != b'K' {
        return None;
    }
    let s: [u8; 8] = key[1..9].try_into().ok()?;
    let i: [u8; 8] = key[9..17].try_into().ok()?;
    Some((u64::from_be_bytes(s), Ino(u64::from_be_bytes(i))))
}

/// `N 0`: the volume's peer secret (32 random bytes, created by the first cache-group
/// member), from which cache-group peers derive the key they authenticate with.
pub const PEER_SECRET: &[u8] = b"N\0";

/// Longest cache-group name (bytes).
pub const GROUP_NAME_MAX: usize = 63;
/// Longest cache-group member id (bytes).
pub const MEMBER_ID_MAX: usize = 128;

fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + group.len());
    k.push(b'N');
    k.push(group.len() as u8);
    k.extend_from_slice(group.as_bytes());
    k
}

/// `N len(1) group member`: a cache-group member's registration. The group's length
/// byte (1..=63) keeps one group's members apart from another's whose name extends it.
pub fn group_member(group: &str, member: &str) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.extend_from_slice(member.as_bytes());
    k
}

/// `[N len group, N len group')`: every member of a group (`group'` is the name with
/// its last byte bumped; names are printable ASCII, so it never overflows).
pub fn group_range(group: &str) -> (Vec<u8>, Vec<u8>) {
    let start = group_prefix(group);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    (start, end)
}

/// `[N 1, O)`: the members of every group (the peer secret, `N 0`, is before it).
pub fn all_groups_range() -> (Vec<u8>, Vec<u8>) {
    (vec![b'N', 1], vec![b'O'])
}

/// (group, member) of an `N` member key; `None` for anything else (the peer secret
/// included).
pub fn group_member_of(key: &[u8]) -> Option<(&str, &str)> {
    let (&tag, rest) = key.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = len as usize;
    if tag != b'N' || len == 0 || len > GROUP_NAME_MAX || rest.len() <= len {
        return None;
    }
    let group = std::str::from_utf8(&rest[..len]).ok()?;
    let member = std::str::from_utf8(&rest[len..]).ok()?;
    Some((group, member))
}

/// The u64 after the one-byte tag of a `G`, `U`, `W`, `H` or `L` key.
pub fn id_of(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(attr(Ino(1)), b"A\0\0\0\0\0\0\0\x01I");
        assert_eq!(dentry(Ino(2), b"ab"), b"A\0\0\0\0\0\0\0\x02Dab");
        assert_eq!(
            chunk(Ino(1), ChunkIndex(3)),
            b"A\0\0\0\0\0\0\0\x01C\0\0\0\x03"
        );
        assert_eq!(counter(NEXT_INODE), b"CnextInode");
        assert_eq!(gc(SliceId(258)), b"G\0\0\0\0\0\0\x01\x02");
        assert_eq!(seq_of_dir_index(&dir_index(Ino(9), 77)), Some(77));
        assert_eq!(
            chunk_index_of(&chunk(Ino(9), ChunkIndex(5))),
            Some(ChunkIndex(5))
        );
        assert_eq!(id_of(&session(5)), Some(5));
        assert!(dir_index(Ino(1), u64::MAX) < dir_index_end(Ino(1)));
        assert_eq!(lock_owner_of(&lock(Ino(3), 7, 9)), Some((7, 9)));
        assert_eq!(held_of(&held(7, Ino(3))), Some((7, Ino(3))));
        let (ls, le) = lock_range(Ino(3));
        let (ss, se) = session_lock_range(Ino(3), u64::MAX);
        assert!(ls <= ss && se <= le && ss < lock(Ino(3), u64::MAX, 0));
        assert!(lock(Ino(3), u64::MAX, u64::MAX) < se);
        let (hs, he) = session_held_range(u64::MAX);
        assert!(hs < held(u64::MAX, Ino(u64::MAX)) && held(u64::MAX, Ino(u64::MAX)) < he);
        assert!(chunk(Ino(1), ChunkIndex(u32::MAX)) < chunk_range_from(Ino(1), 0).1);
        assert_eq!(group_member("gpu", "n1"), b"N\x03gpun1");
        assert_eq!(
            group_member_of(&group_member("gpu", "n1")),
            Some(("gpu", "n1"))
        );
        assert_eq!(group_member_of(PEER_SECRET), None);
        // Group "gp" does not see members of "gpu" (nor the other way round).
        let (s, e) = group_range("gp");
        let k = group_member("gpu", "x");
        assert!(!(s <= k && k < e));
        let (s, e) = group_range("gpu");
        assert!(
            s <= k && k < e && !(s <= group_member("gp", "ux") && group_member("gp", "ux") < e)
        );
        assert!(!(s.as_slice() <= PEER_SECRET && PEER_SECRET < e.as_slice()));
    }
}
