//! The `ferrofs` command line: argument definitions and dispatch. Each subcommand lives
//! in its own module; errors reach the user as one line saying what is wrong and what
//! to do, with a non-zero exit code.

mod access_log;
mod bench;
mod cache_node;
mod cache_opts;
mod config;
mod control;
mod dump;
mod feed;
mod format;
mod fsck;
mod gc;
mod group;
mod meta_member;
mod meta_server;
mod mount;
pub mod mountinfo;
mod objbench;
mod stats;
mod status;
mod umount;
mod warmup;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use crate::units::{parse_duration, parse_rate, parse_size};

/// A distributed POSIX file system for AI training: data in object storage, metadata
/// in a fast separate engine, mounted through FUSE.
#[derive(Parser, Debug)]
#[command(name = "ferrofs", version, about, long_about = None, term_width = 100)]
#[command(
    after_help = "Quick start:\n  ferrofs format sled:///var/lib/ferrofs/meta myvol --storage file --bucket /var/lib/ferrofs/data\n  ferrofs mount sled:///var/lib/ferrofs/meta /mnt/ferrofs -d\n  ferrofs umount /mnt/ferrofs"
)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a volume: write its settings and root directory to the metadata engine.
    Format(FormatArgs),
    /// Mount a volume at a directory.
    Mount(MountArgs),
    /// Unmount a mounted volume (flushes and waits for the mount process to exit).
    Umount(UmountArgs),
    /// Show a volume's settings, usage and client sessions.
    Status(StatusArgs),
    /// Watch one mount live: operations, latency, cache hits, object and peer traffic,
    /// one line per interval.
    Stats(StatsArgs),
    /// Turn a running mount's access log (every FUSE request, with its latency, in the
    /// mount's log) on or off.
    #[command(name = "access-log")]
    AccessLog(AccessLogArgs),
    /// Measure an object store on its own: put, get and delete throughput and latency.
    Objbench(ObjbenchArgs),
    /// Measure a directory (a ferrofs mount, or a local disk to compare with): big-file
    /// write and read, small-file write, read and stat, on -p threads.
    Bench(BenchArgs),
    /// Fill the block cache of a running mount with files and directory trees (or check
    /// how much of them is cached, or drop them from the cache).
    Warmup(WarmupArgs),
    /// Run one replica of a replicated metadata engine (Raft).
    ///
    /// Start one per host, each with its own --id and the same --peers; volumes then use
    /// raft://HOST1:PORT,HOST2:PORT,HOST3:PORT as META-URL. A majority must be up.
    #[command(name = "meta-server")]
    MetaServer(MetaServerArgs),
    /// Run a dedicated cache-group member without a mount: it keeps its share of the
    /// group's blocks on its cache dirs and serves them to the group's readers (the
    /// independent cache cluster).
    #[command(
        name = "cache-node",
        after_help = "Example (three cache nodes, and a training pod that only reads from them):\n  ferrofs cache-node META-URL --cache-group train --cache-dir /ssd1 --cache-size 1T --group-listen 10.0.0.1:9600\n  ferrofs cache-node META-URL --cache-group train --cache-dir /ssd1 --cache-size 1T --group-listen 10.0.0.2:9600\n  ferrofs cache-node META-URL --cache-group train --cache-dir /ssd1 --cache-size 1T --group-listen 10.0.0.3:9600\n  ferrofs mount META-URL /mnt/data --cache-group train --no-sharing\n  ferrofs warmup /mnt/data/dataset     # every block lands on its owner once"
    )]
    CacheNode(CacheNodeArgs),
    /// Find objects no metadata refers to and deletions still queued; --delete removes
    /// them.
    Gc(GcArgs),
    /// Check the metadata's consistency and that every block it refers to is stored.
    Fsck(FsckArgs),
    /// Back up a volume's metadata to a portable JSON file, streamed (any number of
    /// files); `ferrofs load` restores it, into this engine kind or another.
    #[command(
        after_help = "Examples:\n  ferrofs dump sled:///var/lib/ferrofs/meta meta.json\n  ferrofs dump raft://h1:7001,h2:7002,h3:7003 | gzip > meta.json.gz\nA dump is not a point-in-time snapshot while clients write: for an exact backup, dump while\nno client is writing (a sled volume is dumped unmounted anyway). Sessions, locks and\ncache-group registrations are not dumped."
    )]
    Dump(DumpArgs),
    /// Restore a volume's metadata from a `ferrofs dump` file into an empty engine.
    #[command(
        after_help = "Examples:\n  ferrofs load sled:///var/lib/ferrofs/meta2 meta.json\n  gunzip -c meta.json.gz | ferrofs load raft://h1:7001,h2:7002,h3:7003\nThe data stays where it is: the restored volume reads the same object store. A load that\nfails (a damaged file) removes what it wrote, so it can be run again."
    )]
    Load(LoadArgs),
    /// Show or change a volume's settings: the default rate limits of its clients (which
    /// running clients follow within seconds) and its quotas.
    Config(ConfigArgs),
    /// List, add, remove or replace the replicas of a running meta-server cluster,
    /// without downtime.
    #[command(
        name = "meta-member",
        after_help = "Example (replace replica 3 by a new replica 4):\n  ferrofs meta-server --join --id 4 --peers 1=h1:7001,2=h2:7002,4=h4:7004 --data-dir /var/lib/ferrofs/r4 &\n  ferrofs meta-member replace raft://h1:7001,h2:7002,h3:7003 3 4=h4:7004\nA new replica starts with --join and an empty data dir; `add` makes it a learner, waits until it has caught up (by snapshot and log), then makes it a voter."
    )]
    MetaMember(MetaMemberArgs),
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Metadata engine URL of the volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// Delete the leaked objects and the queued deletions (without it: only report).
    #[arg(long)]
    pub delete: bool,
    /// Unreferenced objects younger than this are spared (uploads whose commit may be
    /// under way on a running client); 0 takes them too (only with no client running).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub min_age: Duration,
    /// Deletions in flight at once.
    #[arg(short = 'p', long = "threads", default_value_t = 10, value_name = "N")]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Metadata engine URL of the volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// Recount the usage counters (best with no client mounted).
    #[arg(long)]
    pub repair: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Metadata engine URL of the volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// Where to write the dump; standard output if absent or `-`. A file is written
    /// under a temporary name and renamed when complete.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Keep the object store's secret key in the dump (left out by default).
    #[arg(long)]
    pub keep_secret_key: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Metadata engine URL to load into; it must hold no volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// The dump to read; standard input if absent or `-`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Metadata engine URL of the volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// Default upload limit of every client (Mbps, or 1Gbps, 50MiB/s; 0: none). A
    /// client's own --upload-limit wins.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub upload_limit: Option<u64>,
    /// Default download limit of every client (as --upload-limit).
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub download_limit: Option<u64>,
    /// Space quota, e.g. 1T (0: unlimited); mounts apply it when they next mount.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub capacity: Option<u64>,
    /// Inode quota (0: unlimited); mounts apply it when they next mount.
    #[arg(long, value_name = "COUNT")]
    pub inodes: Option<u64>,
}

/// Cache-group membership, for `mount` and `cache-node`.
#[derive(Args, Debug, Clone)]
pub struct GroupArgs {
    /// Join this cache group: members pool their block caches, each block is kept by one
    /// owner (consistent hashing by weight) and read from it by the others. Members find
    /// each other through the metadata engine.
    #[arg(long, value_name = "NAME")]
    pub cache_group: Option<String>,
    /// Read from the cache group but never own or serve blocks (ephemeral training
    /// pods); such a member still keeps what it reads in its own --cache-dir.
    #[arg(long, requires = "cache_group")]
    pub no_sharing: bool,
    /// This member's share of the group's blocks relative to the others' (e.g. 2 for a
    /// cache twice as large).
    #[arg(long, default_value_t = 1, value_name = "W")]
    pub group_weight: u32,
    /// Where this member serves its blocks to the group (port 0: any free port). Only
    /// loopback by default: give an address the other members can reach.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT")]
    pub group_listen: String,
    /// The address the other members reach this one at, when it is not --group-listen's
    /// (needed with --group-listen 0.0.0.0:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub group_advertise: Option<String>,
    /// This member's id in the group. Default: the host name and a hash of the cache
    /// dirs, the same after a restart, so a restarted member owns what it has cached.
    #[arg(long, value_name = "ID")]
    pub group_id: Option<String>,
    /// How long to wait for a block's owner before reading object storage instead
    /// (an owner that keeps failing is skipped for a while).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub remote_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CacheNodeArgs {
    /// Metadata engine URL of the volume whose blocks it caches.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    #[command(flatten)]
    pub group: GroupArgs,
    /// Block cache dirs, separated by ':' (wildcards allowed), or `memory`.
    #[arg(long, value_name = "DIRS")]
    pub cache_dir: String,
    /// Total size of the cache, split across the dirs.
    #[arg(long, default_value = "100G", value_parser = parse_size, value_name = "SIZE")]
    pub cache_size: u64,
    /// Keep at least this fraction of each cache disk free.
    #[arg(long, default_value_t = 0.1, value_name = "RATIO")]
    pub free_space_ratio: f64,
    /// Which cached blocks go first when the cache is full.
    #[arg(long, default_value = "s3-fifo", value_name = "POLICY")]
    pub cache_eviction: ferrofs_core::cache::policy::PolicyKind,
    /// Object-store downloads in flight at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_downloads: usize,
    /// Retries of a failing object-store request.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub io_retries: u32,
    /// Time allowed for one object-store request.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Serve this node's metrics at http://ADDR/metrics (Prometheus text format).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

#[derive(Args, Debug)]
pub struct MetaMemberArgs {
    #[command(subcommand)]
    pub action: MemberAction,
    /// How long to wait for a new replica to catch up, or for a leader.
    #[arg(long, global = true, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Subcommand, Debug)]
pub enum MemberAction {
    /// Show the members, the leader, and how far each replica's log is.
    List {
        /// raft://[:SECRET@]HOST:PORT,...
        meta_url: String,
    },
    /// Add a replica (started with --join): as a learner, then, once caught up, a voter.
    Add {
        meta_url: String,
        /// The new replica as ID=HOST:PORT.
        #[arg(value_name = "ID=HOST:PORT")]
        replica: String,
    },
    /// Remove a replica (leadership is handed over first if it leads).
    Remove {
        meta_url: String,
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Add a new replica, then remove an old one.
    Replace {
        meta_url: String,
        #[arg(value_name = "OLD_ID")]
        old: u64,
        #[arg(value_name = "NEW_ID=HOST:PORT")]
        new: String,
    },
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example (three replicas on one machine):\n  ferrofs meta-server --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /var/lib/ferrofs/r1\n  ferrofs meta-server --id 2 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /var/lib/ferrofs/r2\n  ferrofs meta-server --id 3 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /var/lib/ferrofs/r3\n  ferrofs format raft://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 myvol --bucket /var/lib/ferrofs/data\n(with FERROFS_META_SECRET set to the same secret for every command)"
)]
pub struct MetaServerArgs {
    /// This replica's id: one of the ids in --peers.
    #[arg(long, value_name = "N")]
    pub id: u64,
    /// Every replica as ID=HOST:PORT, comma-separated, this one included (the same list
    /// on every replica).
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub peers: String,
    /// Where to listen (default: this replica's address in --peers). Nothing listens on
    /// all interfaces unless asked, e.g. --listen 0.0.0.0:7001.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory of this replica's metadata and Raft log (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Raft's clock tick: heartbeats every 2 ticks, elections after 10 to 18.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub tick: Duration,
    /// A file holding the secret every client and replica must prove it knows (clients
    /// give it as raft://:SECRET@... or in FERROFS_META_SECRET). Default: the
    /// FERROFS_META_SECRET environment variable.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Accept clients without a secret (a trusted network only).
    #[arg(long)]
    pub no_auth: bool,
    /// A new replica for a running cluster: start with an empty data dir and wait to be
    /// added (`ferrofs meta-member add`). --peers then needs this replica and at least
    /// one member.
    #[arg(long)]
    pub join: bool,
    /// Snapshot the metadata and compact the Raft log every this many entries.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub snapshot_every: u64,
    /// Serve TLS only, with this certificate chain (PEM). Clients then use
    /// raft://...?tls-ca=CA.pem (or FERROFS_META_TLS_CA). Needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA that vouches for the other replicas' certificates (PEM); a self-signed
    /// certificate is its own CA.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WarmupArgs {
    /// Files and directories (walked recursively) on a ferrofs mount.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also warm the paths listed in this file, one per line.
    #[arg(short = 'f', long = "file", value_name = "LIST")]
    pub file: Option<PathBuf>,
    /// Blocks fetched in parallel.
    #[arg(short = 'p', long = "threads", default_value_t = 50, value_name = "N")]
    pub threads: usize,
    /// Only report how much of the paths is cached.
    #[arg(long)]
    pub check: bool,
    /// Drop the paths' blocks from the cache.
    #[arg(long)]
    pub evict: bool,
    /// Hand the work to the mount and return at once.
    #[arg(short = 'b', long)]
    pub background: bool,
}

/// Object store credentials, for stores that need them.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Access key of the object store (default: AWS_ACCESS_KEY_ID).
    #[arg(long, value_name = "KEY")]
    pub access_key: Option<String>,
    /// Secret key of the object store (default: AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "KEY")]
    pub secret_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct ObjbenchArgs {
    /// Object storage type: file, s3 or memory.
    #[arg(long, default_value = "file")]
    pub storage: String,
    /// The bucket (a directory, or an S3 bucket URL) to measure; objects are written
    /// under ferrofs-objbench/ and deleted afterwards.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Size of each object.
    #[arg(long, default_value = "4M", value_parser = parse_size, value_name = "SIZE")]
    pub block_size: u64,
    /// Number of objects.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub count: usize,
    /// Requests in flight at once.
    #[arg(short = 'p', long = "threads", default_value_t = 4, value_name = "N")]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Metadata engine URL, e.g. sled:///var/lib/ferrofs/meta
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// Volume name: 3 to 63 characters of a-z, 0-9 and '-'.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Object storage type: file (a local directory), s3 (any S3-compatible store) or
    /// memory (testing only).
    #[arg(long, default_value = "file")]
    pub storage: String,
    /// Where objects go: for --storage file, a directory (created if missing); for
    /// --storage s3, a bucket URL such as http://127.0.0.1:9000/mybucket,
    /// https://mybucket.s3.us-east-1.amazonaws.com or s3://mybucket (it must exist).
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// Credentials stored with the volume (without them, mounts use the environment).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Size of the objects a file is stored in (64K to 16M, a power of two).
    #[arg(long, default_value = "4M", value_parser = parse_size, value_name = "SIZE")]
    pub block_size: u64,
    /// Space quota of the volume, e.g. 1T (0 = unlimited).
    #[arg(long, default_value = "0", value_parser = parse_size, value_name = "SIZE")]
    pub capacity: u64,
    /// Inode quota of the volume (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "COUNT")]
    pub inodes: u64,
    /// Overwrite the settings of an existing volume (its files are kept).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Metadata engine URL of a formatted volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
    /// An existing empty directory to mount the volume on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Run in the background; returns once the mount is ready.
    #[arg(short = 'd', long)]
    pub background: bool,
    /// How long the kernel caches attributes. Default: 1s; 30s on raft:// volumes with
    /// the change feed on (--meta-feed-interval), which tells the kernel what other
    /// clients change.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub attr_cache: Option<Duration>,
    /// How long the kernel caches file name lookups. Default: 1s; 30s with the feed.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub entry_cache: Option<Duration>,
    /// How long the kernel caches directory name lookups. Default: 1s; 30s with the
    /// feed.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub dir_entry_cache: Option<Duration>,
    /// How long the kernel remembers that a name does not exist (0: not at all, so a
    /// file another client creates is seen at once). The client's own metadata cache
    /// keeps negative answers just as long. Default: 0s; 30s with the feed.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub negative_entry_cache: Option<Duration>,
    /// How long this client serves attributes, names and directory listings from its
    /// own memory (on top of the kernel's caches); its own changes are seen at once,
    /// other clients' after at most this long, or with the feed as soon as it reports
    /// them. 0 turns it off. Default: 5s; 60s with the feed.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub meta_cache: Option<Duration>,
    /// raft:// volumes: how often to ask the meta servers what other clients changed
    /// (the change feed) and drop it from this client's caches and the kernel's, so
    /// that another client's create, rename, delete or change shows here within about
    /// this long plus a round trip, whatever the cache lifetimes. While the feed does
    /// not answer, the caches are cleared and use the lifetimes without the feed. 0
    /// turns it off.
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DURATION")]
    pub meta_feed_interval: Duration,
    /// Let `open` trust attributes cached this recently instead of asking the metadata
    /// engine (for read-only training data; gives up close-to-open consistency).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub open_cache: Duration,
    /// Memory for writes not yet uploaded and for blocks read ahead, across all open
    /// files: beyond it writers wait for their uploads; readahead stays within a quarter.
    #[arg(long, default_value = "300M", value_parser = parse_size, value_name = "SIZE")]
    pub buffer_size: u64,
    /// Block uploads in flight at once (writes continue while earlier blocks upload).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_uploads: usize,
    /// Block downloads in flight at once for readahead and prefetch (object-store
    /// requests in flight are at most --max-uploads plus this).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_downloads: usize,
    /// After a small random read, fetch its whole block (and the N-1 blocks after it)
    /// in the background for the reads nearby; 0 (the default for now) turns it off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub prefetch: u32,
    /// Retries of a failing object-store request before the operation fails with EIO.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub io_retries: u32,
    /// Time allowed for one object-store request.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Block cache dirs on local disks, separated by ':'; shell wildcards pick up
    /// however many disks a node has (e.g. /var/lib/kubelet/ferrofs_cache/*cache), and
    /// `memory` keeps the cache in memory. Default: /var/lib/ferrofs/cache as root,
    /// else ~/.ferrofs/cache.
    #[arg(long, value_name = "DIRS")]
    pub cache_dir: Option<String>,
    /// Total size of the block cache, split evenly across the cache dirs; 0 turns it off.
    #[arg(long, default_value = "100G", value_parser = parse_size, value_name = "SIZE")]
    pub cache_size: u64,
    /// Keep at least this fraction of each cache disk free (the cache shrinks to stay
    /// within it).
    #[arg(long, default_value_t = 0.1, value_name = "RATIO")]
    pub free_space_ratio: f64,
    /// Which cached blocks go first when the cache is full: s3-fifo, lru, sieve, fifo,
    /// random or 2-random (see bench/README.md for why s3-fifo).
    #[arg(long, default_value = "s3-fifo", value_name = "POLICY")]
    pub cache_eviction: ferrofs_core::cache::policy::PolicyKind,
    /// Write-back: `close` and `fsync` return once written blocks are staged on the
    /// local cache disk (fsynced) and the metadata is committed; uploads to the object
    /// store follow in the background (resumed at the next mount after a crash). Faster
    /// writes, but a lost cache disk loses what was not uploaded yet, and other clients
    /// see the new data only once it is uploaded. Needs --cache-dir on disk.
    #[arg(long)]
    pub writeback: bool,
    /// Threads serving FUSE requests.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub threads: usize,
    /// Let users other than the mounting one access the mount (on by default for root).
    #[arg(long)]
    pub allow_other: bool,
    /// Log file of a background mount (default: /var/log/ferrofs.log as root, else ~/.ferrofs/ferrofs.log).
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Serve this mount's metrics in the Prometheus text format at
    /// http://ADDR/metrics, e.g. 127.0.0.1:9567 (each client its own; off by default).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

/// Per-client bandwidth limits, for `mount` and `cache-node`.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Most bytes per second this client sends: object-store uploads and blocks served to
    /// cache-group peers. A plain number is Mbps (as in JuiceFS); or 1Gbps, 50MiB/s,
    /// 200MB/s; 0: no limit. Default: the volume's (`ferrofs config`), followed live.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub upload_limit: Option<u64>,
    /// Most bytes per second this client receives: object-store downloads and blocks from
    /// cache-group peers. Same units and default as --upload-limit.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub download_limit: Option<u64>,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Detach even if files are still open (lazy unmount).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The directory to measure (a scratch subdirectory is made and removed there).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Size of each thread's big file (0 skips the big-file steps).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    pub big_file_size: u64,
    /// Size of each write and read of the big files.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    pub block_size: u64,
    /// Size of each small file.
    #[arg(long, default_value = "128K", value_parser = parse_size, value_name = "SIZE")]
    pub small_file_size: u64,
    /// Small files per thread (0 skips the small-file steps).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub small_file_count: u64,
    /// Threads, each with its own files.
    #[arg(short = 'p', long = "threads", default_value_t = 1, value_name = "N")]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct AccessLogArgs {
    /// The mount point.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// on or off.
    #[arg(value_name = "on|off")]
    pub state: String,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The mount point.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Time between lines.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Stop after this many lines (default: until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Metadata engine URL of the volume.
    #[arg(value_name = "META-URL")]
    pub meta_url: String,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(&cli.log_level);
    let result = match cli.command {
        Command::Format(a) => format::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
        Command::Status(a) => status::run(a),
        Command::Stats(a) => stats::run(a),
        Command::AccessLog(a) => access_log::run(a),
        Command::Objbench(a) => objbench::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Warmup(a) => warmup::run(a),
        Command::MetaServer(a) => meta_server::run(a),
        Command::MetaMember(a) => meta_member::run(a),
        Command::CacheNode(a) => cache_node::run(a),
        Command::Config(a) => config::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Dump(a) => dump::run_dump(a),
        Command::Load(a) => dump::run_load(a),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("ferrofs: {msg}");
            1
        }
    }
}

fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Errors of the command line are plain messages for people.
pub type CliResult = Result<(), String>;

/// Opens an object store named on the command line.
fn open_object_store(
    storage: &str,
    bucket: &str,
    options: &ferrofs_s3_backend::StoreOptions,
    create: bool,
) -> Result<std::sync::Arc<dyn ferrofs_s3_backend::ObjectStore>, String> {
    if storage != "s3" && (options.access_key.is_some() || options.secret_key.is_some()) {
        return Err(format!(
            "--access-key/--secret-key apply to --storage s3 only, not {storage}"
        ));
    }
    ferrofs_s3_backend::open_store_with(storage, bucket, options, create).map_err(|e| e.to_string())
}

/// Opens the object store of a formatted volume for a one-off tool (`gc`, `fsck`):
/// `concurrency` requests in flight, 30 s per request, 4 retries, no limits or metrics.
fn open_tool_store(
    format: &ferrofs_core::format::Format,
    concurrency: usize,
) -> Result<std::sync::Arc<dyn ferrofs_s3_backend::ObjectStore>, String> {
    open_volume_store(
        format,
        concurrency,
        Duration::from_secs(30),
        4,
        &crate::limit::Limits::default(),
        None,
    )
}

/// Opens the object store of a formatted volume for a long-running process (a mount, a
/// cache node): the volume's credentials, `concurrency` requests in flight, the given
/// deadline per request and retries.
fn open_volume_store(
    format: &ferrofs_core::format::Format,
    concurrency: usize,
    request_timeout: Duration,
    retries: u32,
    limits: &crate::limit::Limits,
    metrics: Option<&std::sync::Arc<crate::metrics::Metrics>>,
) -> Result<std::sync::Arc<dyn ferrofs_s3_backend::ObjectStore>, String> {
    let options = ferrofs_s3_backend::StoreOptions {
        access_key: format.access_key.clone(),
        secret_key: format.secret_key.clone(),
        max_concurrency: Some(concurrency.max(1)),
        request_timeout: Some(request_timeout),
        max_retries: Some(retries),
        ..Default::default()
    };
    let mut store = open_object_store(&format.storage, &format.bucket, &options, false)
        .map_err(|e| format!("cannot open the volume's object store: {e}"))?;
    if let Some(m) = metrics {
        store = std::sync::Arc::new(crate::metrics::MeteredStore {
            inner: store,
            metrics: std::sync::Arc::new(crate::metrics::MetricsHandle(m.clone())),
        });
    }
    if limits.is_empty() {
        return Ok(store);
    }
    Ok(std::sync::Arc::new(crate::limit::LimitedStore::new(
        store,
        limits.clone(),
        format.block_size,
    )))
}

/// What a mount and a cache node do once their `Vfs` exists: record its limits and
/// metrics (for the control socket and the scrape), serve `--metrics`, and follow the
/// volume's default limits in the directions `own` leaves open (until `stop`).
fn instrument(
    vfs: &std::sync::Arc<crate::vfs::Vfs>,
    meta: &std::sync::Arc<ferrofs_core::meta::Meta>,
    limits: &crate::limit::Limits,
    own: (Option<u64>, Option<u64>),
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
    listen: Option<&str>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    vfs.set_limits(limits.clone());
    vfs.set_metrics(metrics.clone());
    metrics.watch(vfs);
    serve_metrics(metrics, listen);
    crate::limit::spawn_follower(meta.clone(), limits.clone(), own, stop.clone())
}

/// Serves `--metrics` if given (a failure to listen is logged: the mount goes on).
fn serve_metrics(metrics: &std::sync::Arc<crate::metrics::Metrics>, listen: Option<&str>) {
    let Some(listen) = listen else { return };
    match metrics.serve(listen) {
        Ok(addr) => tracing::info!("metrics at http://{addr}/metrics"),
        Err(e) => tracing::warn!(
            "cannot serve metrics on {listen}: {e} (choose another --metrics address)"
        ),
    }
}

impl StoreArgs {
    fn options(&self) -> ferrofs_s3_backend::StoreOptions {
        ferrofs_s3_backend::StoreOptions {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            ..Default::default()
        }
    }
}

/// Opens the metadata engine of a formatted volume, with messages that say what to do.
fn open_meta(url: &str) -> Result<ferrofs_core::meta::Meta, String> {
    open_meta_with(url, |kv| kv)
}

/// [`open_meta`] through `wrap`, which may layer something over the engine.
fn open_meta_with(
    url: &str,
    wrap: impl FnOnce(
        std::sync::Arc<dyn ferrofs_core::kv::Kv>,
    ) -> std::sync::Arc<dyn ferrofs_core::kv::Kv>,
) -> Result<ferrofs_core::meta::Meta, String> {
    let parsed = ferrofs_meta::MetaUrl::parse(url).map_err(|e| e.to_string())?;
    let kv = ferrofs_meta::open(&parsed, false).map_err(|e| e.to_string())?;
    ferrofs_core::meta::Meta::load(wrap(kv)).map_err(|e| match e {
        ferrofs_core::Errno::ENOENT => format!(
            "no volume at {url}: it is not formatted; create one with `ferrofs format {url} NAME --bucket DIR`"
        ),
        e => format!("cannot read the volume settings at {url}: {e}"),
    })
}
