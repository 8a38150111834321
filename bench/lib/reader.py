# reader.py ROOT MANIFEST SEED READERS CHECK LAYOUT: one epoch (LAYOUT flat: the files are
# ROOT/<file name> instead of ROOT/<relpath>). The manifest's files in a random
# permutation (seeded), dealt round-robin to READERS threads; each thread opens and reads its
# files whole, one after the other, and checks size and crc32 (or md5). zlib.crc32, hashlib.md5
# and read() release the GIL, so the threads really read in parallel. Prints secs=, bytes=,
# bad=; exits 3 if any file was unreadable or different.
import hashlib, os, random, sys, threading, time, zlib

root, manifest, seed, nreaders, check, layout = sys.argv[1:3] + [sys.argv[3], int(sys.argv[4])] + sys.argv[5:7]
entries = [line.rstrip("\n").split("\t") for line in open(manifest)]
if layout == "flat":
    entries = [[os.path.basename(e[0])] + e[1:] for e in entries]
order = list(range(len(entries)))
random.Random(seed).shuffle(order)
shares = [order[k::nreaders] for k in range(nreaders)]
nbytes = [0] * nreaders
bad = []

def work(k):
    for i in shares[k]:
        rel, size, crc, md5 = entries[i]
        try:
            with open(os.path.join(root, rel), "rb", buffering=0) as f:
                data = f.readall()
        except OSError as e:
            bad.append(f"{rel}: {e}")
            continue
        nbytes[k] += len(data)
        if len(data) != int(size):
            bad.append(f"{rel}: {len(data)} bytes, want {size}")
        elif check == "crc32" and zlib.crc32(data) != int(crc):
            bad.append(f"{rel}: crc32 differs")
        elif check == "md5" and hashlib.md5(data).hexdigest() != md5:
            bad.append(f"{rel}: md5 differs")

threads = [threading.Thread(target=work, args=(k,)) for k in range(nreaders)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.monotonic() - t0
for b in bad[:20]:
    print(b, file=sys.stderr)
print(f"secs={secs:.6f}\nbytes={sum(nbytes)}\nbad={len(bad)}")
sys.exit(3 if bad else 0)
