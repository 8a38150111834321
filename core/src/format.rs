//! The volume's settings, written once by `format` under the `setting` key and read by
//! every client at mount.

use serde::{Deserialize, Serialize};

/// Default size of a block object (4 MiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 4 << 20;
/// Smallest allowed block size (64 KiB).
pub const MIN_BLOCK_SIZE: u32 = 64 << 10;
/// Largest allowed block size (16 MiB).
pub const MAX_BLOCK_SIZE: u32 = 16 << 20;
/// The format version this code writes.
pub const FORMAT_VERSION: u32 = 1;

/// A volume's settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Format {
    /// Volume name: 3..=63 characters of `[a-z0-9-]`.
    pub name: String,
    pub uuid: String,
    /// Object store kind: `"file"` (local directory) or `"s3"`.
    pub storage: String,
    /// Bucket or directory of the object store.
    pub bucket: String,
    /// Object store access key, if the volume stores one (else the environment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// Object store secret key, if the volume stores one. Never shown: see
    /// [`Format::redacted`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Size of block objects in bytes: a power of two in 64 KiB..=16 MiB.
    pub block_size: u32,
    /// Capacity in bytes; 0 means unlimited.
    pub capacity: u64,
    /// Maximum number of inodes; 0 means unlimited.
    pub inodes: u64,
    pub version: u32,
    /// Volume-wide default of each client's upload limit in bytes per second (0: none);
    /// a client's own `--upload-limit` wins. Running clients pick changes up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub upload_limit: u64,
    /// Volume-wide default of each client's download limit (as `upload_limit`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub download_limit: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Format {
    /// Settings with defaults: local `"file"` storage, 4 MiB blocks, no limits.
    pub fn new(name: &str, uuid: &str) -> Format {
        Format {
            name: name.to_string(),
            uuid: uuid.to_string(),
            storage: "file".to_string(),
            bucket: String::new(),
            access_key: None,
            secret_key: None,
            block_size: DEFAULT_BLOCK_SIZE,
            capacity: 0,
            inodes: 0,
            version: FORMAT_VERSION,
            upload_limit: 0,
            download_limit: 0,
        }
    }

    /// The settings as shown to people: the secret key replaced by `"removed"`.
    pub fn redacted(&self) -> Format {
        let mut f = self.clone();
        if f.secret_key.is_some() {
            f.secret_key = Some("removed".to_string());
        }
        f
    }

    /// The JSON stored under the `setting` key.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("Format serializes")
    }

    /// Parses settings written by [`Format::to_json`].
    pub fn from_json(s: &str) -> Result<Format, String> {
        serde_json::from_str(s).map_err(|e| format!("invalid volume settings: {e}"))
    }

    /// Checks the name and block size; the error is a message for the user.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.name.len();
        if !(3..=63).contains(&n) {
            return Err(format!(
                "invalid volume name {:?}: must be 3 to 63 characters long",
                self.name
            ));
        }
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "invalid volume name {:?}: only lowercase letters, digits and '-' are allowed",
                self.name
            ));
        }
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(format!(
                "invalid block size {bs}: must be a power of two between 64 KiB and 16 MiB"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_roundtrip() {
        let mut f = Format::new("vol-1", "0123-abcd");
        f.capacity = 1 << 40;
        f.inodes = 1000;
        let j = f.to_json();
        assert_eq!(Format::from_json(&j).unwrap(), f);
        assert!(
            !j.contains("limit"),
            "no limits, no fields: older clients read it"
        );
        f.upload_limit = 10_000_000;
        assert_eq!(Format::from_json(&f.to_json()).unwrap(), f);
        assert!(Format::from_json("{").is_err());
        assert!(Format::from_json("{\"name\":\"x\"}").is_err());
    }

    #[test]
    fn validate_name() {
        let ok = |n: &str| {
            let f = Format::new(n, "u");
            f.validate()
        };
        assert!(ok("abc").is_ok());
        assert!(ok("a-0-b").is_ok());
        assert!(ok(&"a".repeat(63)).is_ok());
        assert!(ok("ab").is_err());
        assert!(ok(&"a".repeat(64)).is_err());
        assert!(ok("Abc").is_err());
        assert!(ok("a_c").is_err());
        assert!(ok("a c").is_err());
        assert!(ok("ab\u{e9}").is_err());
    }

    #[test]
    fn validate_block_size() {
        let with = |bs: u32| {
            let mut f = Format::new("vol", "u");
            f.block_size = bs;
            f.validate()
        };
        assert!(with(DEFAULT_BLOCK_SIZE).is_ok());
        assert!(with(64 << 10).is_ok());
        assert!(with(16 << 20).is_ok());
        assert!(with(32 << 10).is_err());
        assert!(with(32 << 20).is_err());
        assert!(with(3 << 20).is_err());
        assert!(with(0).is_err());
    }
}
