//! Reading and changing a formatted volume's settings (`ferrofs config`). A running
//! client keeps the settings it loaded; what it follows live (the rate-limit defaults)
//! it rereads with [`Meta::read_settings`].

use super::{keys, Meta};
use crate::errno::{Errno, Result};
use crate::format::Format;
use crate::kv;

fn decode(raw: &[u8]) -> Result<Format> {
    let json = std::str::from_utf8(raw).map_err(|_| Errno::EIO)?;
    Format::from_json(json).map_err(|_| Errno::EIO)
}

impl Meta {
    /// The settings as stored now.
    pub fn read_settings(&self) -> Result<Format> {
        let raw = kv::read(&**self.kv(), |t| t.get(keys::SETTING))?.ok_or(Errno::ENOENT)?;
        decode(&raw)
    }

    /// Changes the stored settings with `change` in one transaction and returns them.
    /// The name, uuid, storage, bucket and block size cannot change (EINVAL): blocks
    /// already written depend on them.
    pub fn update_settings(&self, mut change: impl FnMut(&mut Format)) -> Result<Format> {
        kv::txn(&**self.kv(), |t| {
            let raw = t.get(keys::SETTING)?.ok_or(Errno::ENOENT)?;
            let before = decode(&raw)?;
            let mut f = before.clone();
            change(&mut f);
            let fixed = (&f.name, &f.uuid, &f.storage, &f.bucket, f.block_size);
            if fixed
                != (
                    &before.name,
                    &before.uuid,
                    &before.storage,
                    &before.bucket,
                    before.block_size,
                )
                || f.validate().is_err()
            {
                return Err(Errno::EINVAL);
            }
            t.set(keys::SETTING, f.to_json().as_bytes());
            Ok(f)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::meta::tests::setup;
    use crate::Errno;

    #[test]
    fn limits_and_quotas_change_but_not_the_layout() {
        let m = setup().m;
        let f = m
            .update_settings(|f| {
                f.upload_limit = 1000;
                f.capacity = 1 << 30;
            })
            .unwrap();
        assert_eq!((f.upload_limit, f.capacity), (1000, 1 << 30));
        assert_eq!(m.read_settings().unwrap(), f);
        assert_eq!(m.update_settings(|f| f.block_size *= 2), Err(Errno::EINVAL));
        assert_eq!(
            m.update_settings(|f| f.name = "other-name".into()),
            Err(Errno::EINVAL)
        );
        assert_eq!(m.read_settings().unwrap(), f);
    }
}
