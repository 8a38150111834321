use super::*;

fn list_all(fx: &Fx, dir: Ino, page: usize, plus: bool) -> Vec<DirEntry> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let ents = fx.m.readdir(&root(), dir, off, page, plus).unwrap();
        if ents.is_empty() {
            return out;
        }
        assert!(ents.len() <= page);
        off = ents.last().unwrap().next_offset;
        out.extend(ents);
    }
}

#[test]
fn dots_come_first_with_cookies_1_and_2() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let f = fx.file(&root(), d.ino, "f", 0o644);
    let ents = fx.m.readdir(&root(), d.ino, 0, 10, false).unwrap();
    let view: Vec<_> = ents
        .iter()
        .map(|e| (e.name.clone(), e.ino, e.kind, e.next_offset))
        .collect();
    assert_eq!(
        view,
        vec![
            (b".".to_vec(), d.ino, FileType::Directory, 1),
            (b"..".to_vec(), Ino::ROOT, FileType::Directory, 2),
            (b"f".to_vec(), f.ino, FileType::RegularFile, 3),
        ]
    );
    assert!(ents.iter().all(|e| e.attr.is_none()));
    // Resuming after each cookie.
    assert_eq!(fx.m.readdir(&root(), d.ino, 1, 10, false).unwrap().len(), 2);
    assert_eq!(fx.m.readdir(&root(), d.ino, 2, 10, false).unwrap().len(), 1);
    assert!(fx
        .m
        .readdir(&root(), d.ino, 3, 10, false)
        .unwrap()
        .is_empty());
    assert!(fx
        .m
        .readdir(&root(), d.ino, u64::MAX, 10, false)
        .unwrap()
        .is_empty());
    assert!(fx
        .m
        .readdir(&root(), d.ino, 0, 0, false)
        .unwrap()
        .is_empty());
    // Pages of one.
    let one = fx.m.readdir(&root(), d.ino, 0, 1, false).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, b".");
    let root_ents = fx.m.readdir(&root(), Ino::ROOT, 0, 2, false).unwrap();
    assert_eq!(root_ents[1].ino, Ino::ROOT);
}

#[test]
fn plus_fills_attributes() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let f = fx.file(&root(), d.ino, "f", 0o600);
    let s = fx.m.symlink(&root(), d.ino, b"s", b"f", ts(3)).unwrap();
    let ents = fx.m.readdir(&root(), d.ino, 0, 10, true).unwrap();
    let attrs: Vec<Attr> = ents.into_iter().map(|e| e.attr.unwrap()).collect();
    assert_eq!(attrs, vec![fx.attr(d.ino), fx.attr(Ino::ROOT), f, s]);
}

#[test]
fn readdir_errors() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    assert_eq!(
        fx.m.readdir(&root(), f.ino, 0, 10, false).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.readdir(&root(), Ino(999), 0, 10, false).err(),
        Some(Errno::ENOENT)
    );
}

#[test]
fn large_directory_pages_and_survives_changes() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "big", 0o755);
    let n = 20_000;
    for i in 0..n {
        fx.m.mknod(
            &root(),
            d.ino,
            format!("f{i:05}").as_bytes(),
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
        .unwrap();
    }
    // A full listing in pages of 100 sees every name exactly once, in creation order.
    let all = list_all(&fx, d.ino, 100, false);
    assert_eq!(all.len(), n + 2);
    for (i, e) in all[2..].iter().enumerate() {
        assert_eq!(e.name, format!("f{i:05}").into_bytes());
    }
    // Now list again while removing and creating entries between pages.
    let mut seen: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    let mut off = 0;
    let mut page_no = 0;
    let mut removed = BTreeSet::new();
    let mut added = BTreeSet::new();
    loop {
        let ents = fx.m.readdir(&root(), d.ino, off, 100, true).unwrap();
        if ents.is_empty() {
            break;
        }
        for e in &ents {
            *seen.entry(e.name.clone()).or_default() += 1;
            assert!(e.attr.is_some());
        }
        off = ents.last().unwrap().next_offset;
        // Remove the entry just returned, one not yet listed, and add a new one.
        let last = ents.last().unwrap().name.clone();
        if last.starts_with(b"f") {
            fx.m.unlink(&root(), d.ino, &last, ts(3)).unwrap();
        }
        let ahead = format!("f{:05}", (page_no * 100 + 10_050) % n).into_bytes();
        if fx.m.unlink(&root(), d.ino, &ahead, ts(3)).is_ok() {
            removed.insert(ahead);
        }
        if page_no < 150 {
            let new = format!("new{page_no}").into_bytes();
            fx.m.mknod(
                &root(),
                d.ino,
                &new,
                FileType::RegularFile,
                0o644,
                0,
                0,
                ts(3),
            )
            .unwrap();
            added.insert(new);
        }
        page_no += 1;
        assert!(page_no < 1000, "listing does not end");
    }
    assert!(seen.values().all(|&c| c == 1), "a name was listed twice");
    for i in 0..n {
        let name = format!("f{i:05}").into_bytes();
        if !removed.contains(&name) {
            assert!(seen.contains_key(&name), "missing {name:?}");
        }
    }
    // Entries created during the listing appear (they get higher cookies).
    assert!(added.iter().all(|a| seen.contains_key(a)));
    fx.check();
}
