//! `ferrofs access-log MOUNTPOINT on|off`: turns a running mount's access log on or off
//! without a remount. When on, every FUSE request is logged (op, latency in µs) to the
//! mount's log at info level, target `ferrofs::access`.

use super::mountinfo::ferrofs_mount;
use super::{AccessLogArgs, CliResult};
use serde_json::json;

pub fn run(a: AccessLogArgs) -> CliResult {
    let on = match a.state.as_str() {
        "on" => true,
        "off" => false,
        other => return Err(format!("access-log takes on or off, not {other:?}")),
    };
    let mnt = ferrofs_mount(&a.mountpoint)?;
    let done = super::control::ask(&mnt, &json!({ "op": "access-log", "on": on }), &mut |_| {})?;
    let was = done["was"].as_bool().unwrap_or(false);
    println!(
        "access log of {} {} (was {}); it goes to the mount's log (--log)",
        mnt.display(),
        if on { "on" } else { "off" },
        if was { "on" } else { "off" }
    );
    Ok(())
}
