//! `ferrofs stats MOUNTPOINT`: a live view of one mount, one line per interval (like
//! `vmstat`): FUSE operations and their mean latency, reads and writes, the block cache's
//! hit ratio, object-store requests and traffic, cache-group peer hits, the staging
//! backlog. It asks the mount's control socket (`{"op": "stats"}`) every interval.

use super::mountinfo::ferrofs_mount;
use super::{CliResult, StatsArgs};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

const HEADER: &str =
    "  ops/s  lat ms  reads/s writes/s  hit %   GET/s   PUT/s  down MB/s  up MB/s  peer/s  staged";

fn ask(sock: &Path) -> Result<Value, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot reach the mount's control socket {}: {e}",
            sock.display()
        )
    })?;
    s.write_all(b"{\"op\":\"stats\"}\n")
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("bad answer: {e}"))?;
    match v.get("done") {
        Some(d) => Ok(d.clone()),
        None => Err(v["error"].as_str().unwrap_or("no answer").to_string()),
    }
}

fn n(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or(0.0)
}

/// Sums of (count, ns) over FUSE ops, and the counts of reads and writes.
fn fuse_totals(v: &Value) -> (f64, f64, f64, f64) {
    let (mut count, mut ns) = (0.0, 0.0);
    if let Some(ops) = v["fuse"].as_object() {
        for op in ops.values() {
            count += op[0].as_f64().unwrap_or(0.0);
            ns += op[1].as_f64().unwrap_or(0.0);
        }
    }
    let calls = |op: &str| v["fuse"][op][0].as_f64().unwrap_or(0.0);
    (count, ns, calls("read"), calls("write"))
}

/// One line of the view: what changed from `a` to `b` over `secs`.
pub fn line(a: &Value, b: &Value, secs: f64) -> String {
    let (c0, ns0, r0, w0) = fuse_totals(a);
    let (c1, ns1, r1, w1) = fuse_totals(b);
    let ops = c1 - c0;
    let lat_ms = if ops > 0.0 {
        (ns1 - ns0) / ops / 1e6
    } else {
        0.0
    };
    let d = |p: &[&str]| n(b, p) - n(a, p);
    let hits = d(&["cache", "hits"]);
    let lookups = hits + d(&["cache", "misses"]);
    let hit = if lookups > 0.0 {
        format!("{:6.1}", 100.0 * hits / lookups)
    } else {
        "     -".to_string()
    };
    format!(
        "{:7.0} {:7.2} {:8.0} {:8.0} {hit} {:7.0} {:7.0} {:10.1} {:8.1} {:7.0} {:7}",
        ops / secs,
        lat_ms,
        (r1 - r0) / secs,
        (w1 - w0) / secs,
        d(&["object", "get"]) / secs,
        d(&["object", "put"]) / secs,
        d(&["object", "bytes_down"]) / secs / 1e6,
        d(&["object", "bytes_up"]) / secs / 1e6,
        d(&["peers", "hits"]) / secs,
        n(b, &["staging"]),
    )
}

pub fn run(a: StatsArgs) -> CliResult {
    let mnt = ferrofs_mount(&a.mountpoint)?;
    let sock = super::control::socket_path(&mnt);
    let interval = a.interval.max(std::time::Duration::from_millis(100));
    let mut before = ask(&sock)?;
    let mut at = std::time::Instant::now();
    let mut shown = 0u64;
    let mut since_header = 0u32;
    loop {
        if a.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        if since_header == 0 {
            println!("{HEADER}");
        }
        since_header = (since_header + 1) % 20;
        std::thread::sleep(interval);
        let now = ask(&sock)?;
        let secs = at.elapsed().as_secs_f64();
        at = std::time::Instant::now();
        println!("{}", line(&before, &now, secs));
        let _ = std::io::stdout().flush();
        before = now;
        shown += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_shows_rates_over_the_interval() {
        let a = json!({ "fuse": { "read": [10, 10_000_000] }, "object": { "get": 1, "bytes_down": 0 },
                        "cache": { "hits": 0, "misses": 0 }, "staging": 0 });
        let b = json!({ "fuse": { "read": [30, 50_000_000], "lookup": [20, 10_000_000] },
                        "object": { "get": 5, "bytes_down": 4_000_000 },
                        "cache": { "hits": 3, "misses": 1 }, "staging": 2 });
        let l = line(&a, &b, 2.0);
        let cols: Vec<&str> = l.split_whitespace().collect();
        // 40 ops in 2 s, 50 ms over 40 ops, 10 reads/s, 0 writes/s, 75% hits, 2 GET/s...
        assert_eq!(
            cols,
            ["20", "1.25", "10", "0", "75.0", "2", "0", "2.0", "0.0", "0", "2"]
        );
        assert_eq!(
            cols.len(),
            HEADER.split_whitespace().count() - 4,
            "{HEADER}"
        );
    }
}
