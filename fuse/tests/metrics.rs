//! A mount's own metrics: `--metrics` serves the Prometheus text of this client, and
//! `ferrofs stats` shows it live; `ferrofs bench` measures the mount; `ferrofs access-log`
//! logs its requests, switched at runtime.

mod common;

use common::{ferrofs, free_addr, stderr, stdout, Volume};
use std::io::{Read, Write};

fn scrape(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample `name` (exactly as printed, labels included).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[test]
fn a_mount_serves_its_metrics_and_stats_shows_them() {
    let mut v = Volume::new();
    v.format();
    let addr = free_addr();
    v.mount_with(&["--metrics", &addr]);
    let data = vec![7u8; 300_000];
    for i in 0..5 {
        std::fs::write(v.path(&format!("f{i}")), &data).unwrap();
    }
    for i in 0..5 {
        assert_eq!(std::fs::read(v.path(&format!("f{i}"))).unwrap(), data);
    }
    let text = scrape(&addr, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        sample(
            &text,
            "ferrofs_fuse_op_duration_seconds_count{op=\"write\"}"
        ) >= 5.0
    );
    assert!(
        sample(
            &text,
            "ferrofs_fuse_op_duration_seconds_count{op=\"create\"}"
        ) >= 5.0
    );
    assert!(sample(&text, "ferrofs_object_requests_total{op=\"put\"}") >= 5.0);
    assert!(sample(&text, "ferrofs_object_bytes_total{direction=\"up\"}") >= 1_500_000.0);
    assert!(
        sample(
            &text,
            "ferrofs_meta_txn_duration_seconds_count{op=\"write\"}"
        ) >= 5.0
    );
    assert!(sample(&text, "ferrofs_used_inodes") >= 6.0);
    assert!(text.contains("ferrofs_blockcache_hits_total"), "{text}");
    assert!(scrape(&addr, "/other").starts_with("HTTP/1.1 404"));

    let o = ferrofs(&[
        "stats",
        v.mnt.to_str().unwrap(),
        "--interval",
        "300ms",
        "--count",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("ops/s") && lines[0].contains("GET/s"),
        "{out}"
    );
    // `ferrofs bench` on the mount: every step in the table.
    let o = ferrofs(&[
        "bench",
        v.mnt.to_str().unwrap(),
        "--big-file-size",
        "4M",
        "--small-file-count",
        "20",
        "-p",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for step in [
        "write big file",
        "read big file",
        "write small files",
        "read small files",
        "stat small files",
    ] {
        assert!(out.contains(step), "{step} missing: {out}");
    }
    assert_eq!(
        std::fs::read_dir(&v.mnt).unwrap().count(),
        5,
        "bench cleaned up"
    );
    // The access log, switched on at runtime, lands in the mount's log.
    let o = ferrofs(&["access-log", v.mnt.to_str().unwrap(), "on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(v.path("logged"), b"x").unwrap();
    let o = ferrofs(&["access-log", v.mnt.to_str().unwrap(), "off"]);
    assert!(stdout(&o).contains("(was on)"), "{}", stdout(&o));
    let log = std::fs::read_to_string(v.dir.path().join("mount.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("op=\"create\"") || l.contains("op=create")),
        "no access log line in:\n{log}"
    );
    let o = ferrofs(&["access-log", v.mnt.to_str().unwrap(), "maybe"]);
    assert!(!o.status.success());
    let o = ferrofs(&["stats", "/"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a ferrofs mount"), "{}", stderr(&o));
    v.umount();
}
