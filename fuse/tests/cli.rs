//! What users read: `--help`, and one clear line for every kind of bad input.

mod common;
use common::*;

#[test]
fn help_is_stable() {
    for args in [
        vec!["--help"],
        vec!["format", "--help"],
        vec!["mount", "--help"],
        vec!["umount", "--help"],
        vec!["status", "--help"],
        vec!["warmup", "--help"],
    ] {
        let o = ferrofs(&args);
        assert!(o.status.success());
        insta::assert_snapshot!(args.join("_").replace("--", ""), stdout(&o));
    }
}

#[test]
fn bad_meta_url_is_named() {
    let v = Volume::new();
    let o = ferrofs(&[
        "format",
        "redis://x",
        "vol",
        "--bucket",
        v.data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(v.redact(&stderr(&o)));
    assert!(!v.data.exists(), "nothing is created on bad input");
}

#[test]
fn bad_size_and_unknown_flag_are_usage_errors() {
    let v = Volume::new();
    let o = ferrofs(&[
        "format",
        &v.meta_url,
        "vol",
        "--bucket",
        "/tmp/x",
        "--block-size",
        "4X",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid size '4X'"), "{}", stderr(&o));
    let o = ferrofs(&["mount", &v.meta_url, "/mnt", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
}

#[test]
fn bad_volume_settings_are_rejected_before_anything_is_written() {
    let v = Volume::new();
    let o = ferrofs(&[
        "format",
        &v.meta_url,
        "vol",
        "--bucket",
        v.data.to_str().unwrap(),
        "--block-size",
        "3M",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("block"), "{}", stderr(&o));
    assert!(!v.dir.path().join("meta").exists());
    let o = ferrofs(&[
        "format",
        &v.meta_url,
        "Bad_Name",
        "--bucket",
        v.data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!v.dir.path().join("meta").exists());
}

#[test]
fn second_format_needs_force() {
    let v = Volume::new();
    v.format();
    let o = ferrofs(&[
        "format",
        &v.meta_url,
        "testvol",
        "--bucket",
        v.data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(v.redact(&stderr(&o)));
    let o = ferrofs(&[
        "format",
        &v.meta_url,
        "testvol",
        "--bucket",
        v.data.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unformatted_volume_and_missing_mountpoint() {
    let v = Volume::new();
    let o = ferrofs(&["mount", &v.meta_url, v.mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("mount_unformatted", v.redact(&stderr(&o)));
    let o = ferrofs(&["status", &v.meta_url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ferrofs format"), "{}", stderr(&o));
    v.format();
    let missing = v.dir.path().join("nope");
    let o = ferrofs(&["mount", &v.meta_url, missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("mount_missing_mountpoint", v.redact(&stderr(&o)));
}

#[test]
fn missing_bucket_dir_at_mount() {
    let v = Volume::new();
    v.format();
    std::fs::remove_dir_all(&v.data).unwrap();
    let o = ferrofs(&["mount", &v.meta_url, v.mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn status_shows_settings_and_usage() {
    let v = Volume::new();
    v.format();
    let o = ferrofs(&["status", &v.meta_url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["setting"]["name"], "testvol");
    assert_eq!(json["setting"]["block_size"], 65536);
    assert_eq!(json["usage"]["used_inodes"], 1);
    assert!(json["sessions"].as_array().unwrap().is_empty());
}

#[test]
fn bad_cache_options_are_named() {
    let mut v = Volume::new();
    v.format();
    let mnt = v.mnt.to_str().unwrap().to_string();
    let pattern = format!("{}/nothing-*", v.dir.path().display());
    let o = ferrofs(&["mount", &v.meta_url, &mnt, "--cache-dir", &pattern]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no directory matches"),
        "{}",
        stderr(&o)
    );
    let o = ferrofs(&["mount", &v.meta_url, &mnt, "--cache-eviction", "mru"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("mru"), "{}", stderr(&o));
    let o = ferrofs(&["mount", &v.meta_url, &mnt, "--free-space-ratio", "1.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--free-space-ratio"), "{}", stderr(&o));
    let o = ferrofs(&["warmup", "/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not on a ferrofs mount"),
        "{}",
        stderr(&o)
    );
    // Nothing was mounted by the failed attempts.
    v.mount();
    v.umount();
}

#[test]
fn bad_cache_group_options_are_named() {
    let mut v = Volume::new();
    v.format();
    let mnt = v.mnt.to_str().unwrap().to_string();
    // Members find each other through a shared engine; sled admits one process.
    let o = ferrofs(&["mount", &v.meta_url, &mnt, "--cache-group", "g"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("raft://"), "{}", stderr(&o));
    let o = ferrofs(&["mount", &v.meta_url, &mnt, "--no-sharing"]);
    assert_eq!(o.status.code(), Some(2), "--no-sharing needs --cache-group");
    let o = ferrofs(&["cache-node", &v.meta_url, "--cache-dir", "memory"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--cache-group"), "{}", stderr(&o));
    let o = ferrofs(&[
        "cache-node",
        &v.meta_url,
        "--cache-group",
        "g",
        "--cache-dir",
        "memory",
        "--cache-size",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--cache-size"), "{}", stderr(&o));
    let o = ferrofs(&["cache-node", "--help"]);
    assert!(stdout(&o).contains("--group-weight"), "{}", stdout(&o));
    // Nothing was mounted by the failed attempts.
    v.mount();
    v.umount();
}

#[test]
fn config_changes_limits_and_quotas_but_says_what_it_cannot() {
    let v = Volume::new();
    v.format();
    let o = ferrofs(&[
        "config",
        &v.meta_url,
        "--upload-limit",
        "100",
        "--capacity",
        "1G",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ferrofs(&["config", &v.meta_url]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["upload_limit"], 12_500_000, "100 Mbps");
    assert_eq!(json["capacity"], 1u64 << 30);
    assert!(json.get("download_limit").is_none(), "{json}");
    let o = ferrofs(&["config", &v.meta_url, "--upload-limit", "fast"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("50MiB/s"), "{}", stderr(&o));
    let o = ferrofs(&[
        "mount",
        &v.meta_url,
        "/nonexistent",
        "--download-limit",
        "1x",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
