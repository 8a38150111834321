# gen.py OUTDIR FILES DIRS SIZE_KIB SEED: writes OUTDIR/dNN/fNNNNNNN of random bytes from a
# seeded generator (sizes within +-10% of SIZE_KIB), prints the manifest
# "relpath<TAB>size<TAB>crc32<TAB>md5" in file order.
import hashlib, os, random, sys, zlib
from multiprocessing import Pool

out, files, dirs, kib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lo, hi = int(kib * 1024 * 0.9), int(kib * 1024 * 1.1)
per_dir = -(-files // dirs)
width = max(2, len(str(dirs - 1)))

def make(i):
    rng = random.Random(f"{seed}:{i}")
    size = rng.randint(lo, hi)
    data = rng.randbytes(size)
    rel = f"d{i // per_dir:0{width}d}/f{i:07d}"
    with open(os.path.join(out, rel), "wb") as f:
        f.write(data)
    return f"{rel}\t{size}\t{zlib.crc32(data)}\t{hashlib.md5(data).hexdigest()}"

for d in range(-(-files // per_dir)):
    os.makedirs(os.path.join(out, f"d{d:0{width}d}"), exist_ok=True)
with Pool(os.cpu_count()) as p:
    for line in p.imap(make, range(files), chunksize=64):
        print(line)
