//! `ferrofs dump META-URL [FILE]` and `ferrofs load META-URL [FILE]`: the volume's
//! metadata to a portable JSON file and back (the core's `meta::dump` decides what goes
//! in and what a record must hold; this shell moves bytes and shows progress).

use super::{open_meta, CliResult, DumpArgs, LoadArgs};
use ferrofs_core::meta::dump::{self, DumpOptions, DumpProgress, LoadError};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Buffer of the dump file in either direction.
const BUF: usize = 1 << 20;

fn bar(len: u64, template: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

fn is_stdio(f: &Option<PathBuf>) -> bool {
    f.as_deref().is_none_or(|p| p == Path::new("-"))
}

/// Counts the bytes that pass, for the output's size and the input's progress.
struct Counting<T> {
    inner: T,
    bytes: u64,
    bar: Option<ProgressBar>,
}

impl<T: Write> Write for Counting<T> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Counting<T> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.bytes += n as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes);
        }
        Ok(n)
    }
}

pub fn run_dump(a: DumpArgs) -> CliResult {
    let meta = open_meta(&a.meta_url)?;
    let started = Instant::now();
    let (sink, partial): (Box<dyn Write>, Option<(PathBuf, PathBuf)>) = if is_stdio(&a.file) {
        (Box::new(std::io::stdout().lock()), None)
    } else {
        let file = a.file.clone().unwrap_or_default();
        let mut tmp = file.clone().into_os_string();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let f = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        (Box::new(f), Some((tmp, file)))
    };
    let mut out = Counting {
        inner: BufWriter::with_capacity(BUF, sink),
        bytes: 0,
        bar: None,
    };
    let progress = bar(0, "dumping {msg} [{bar:40}] {pos}/{len} {per_sec}");
    let opts = DumpOptions {
        keep_secret_key: a.keep_secret_key,
    };
    let result = dump::dump(&**meta.kv(), &mut out, opts, &mut |p| {
        let (what, done, total) = match p {
            DumpProgress::Inodes { done, total } => ("inodes", done, total),
            DumpProgress::Entries { done, total } => ("entries", done, total),
        };
        progress.set_message(what);
        progress.set_length(total.max(done));
        progress.set_position(done);
    });
    progress.finish_and_clear();
    let bytes = out.bytes;
    drop(out);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some((tmp, _)) = &partial {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e.to_string());
        }
    };
    if let Some((tmp, file)) = &partial {
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(tmp, file))
            .map_err(|e| format!("cannot finish {}: {e}", file.display()))?;
    }
    eprintln!(
        "dumped {} inodes, {} entries, {} queued deletions, {} staged slices ({}) in {:.1} s",
        stats.inodes,
        stats.entries,
        stats.deleted_slices,
        stats.staged_slices,
        HumanBytes(bytes),
        started.elapsed().as_secs_f64()
    );
    if stats.sessions > 0 {
        eprintln!(
            "note: {} client session(s) are registered; what they changed during the dump may be half in it. For an exact backup, dump while no client writes.",
            stats.sessions
        );
    }
    if stats.orphan_keys > 0 {
        eprintln!(
            "warning: {} keys belong to inodes without attributes and were left out; `ferrofs fsck {}` names them",
            stats.orphan_keys, a.meta_url
        );
    }
    Ok(())
}

pub fn run_load(a: LoadArgs) -> CliResult {
    let url = ferrofs_meta::MetaUrl::parse(&a.meta_url).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (source, len): (Box<dyn Read>, Option<u64>) = if is_stdio(&a.file) {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let path = a.file.clone().unwrap_or_default();
        let f = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = f.metadata().map(|m| m.len()).ok();
        (Box::new(f), len)
    };
    let kv = ferrofs_meta::open(&url, true).map_err(|e| e.to_string())?;
    let progress = match len {
        Some(n) => bar(
            n,
            "loading [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => bar(0, "loading {binary_bytes} {binary_bytes_per_sec}"),
    };
    let input = Counting {
        inner: BufReader::with_capacity(BUF, source),
        bytes: 0,
        bar: Some(progress.clone()),
    };
    let result = dump::load(&*kv, input);
    progress.finish_and_clear();
    let stats = result.map_err(|e| match e {
        LoadError::NotEmpty(m) => format!(
            "{m}: {} (a new sled directory, or a new meta-server cluster)",
            a.meta_url
        ),
        LoadError::Invalid(m) => format!("{m}; nothing was loaded"),
        LoadError::Meta(e) => format!(
            "the metadata engine at {} failed: {e}; nothing was loaded",
            a.meta_url
        ),
    })?;
    eprintln!(
        "loaded {} inodes, {} entries, {} queued deletions, {} staged slices, {} of files in {:.1} s",
        stats.inodes,
        stats.entries,
        stats.deleted_slices,
        stats.staged_slices,
        HumanBytes(stats.file_bytes),
        started.elapsed().as_secs_f64()
    );
    if stats.dropped_unlinked > 0 {
        eprintln!(
            "note: {} file(s) were unlinked but still open when dumped; their data was queued for deletion",
            stats.dropped_unlinked
        );
    }
    if stats.no_secret_key {
        eprintln!(
            "note: the dump holds no object-store secret key (dump with --keep-secret-key to keep it); clients take it from the environment (AWS_SECRET_ACCESS_KEY)"
        );
    }
    Ok(())
}
