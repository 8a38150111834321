#!/usr/bin/env python3
"""Writes a ferrofs dump (ARCHITECTURE.md, "Dump format") of a volume with FILES regular
files spread over DIRS directories under the root, each file one slice of 1-256 KiB, to
standard output. Only metadata: the objects do not exist (stat and readdir work; reads
would not).

    gen_dump.py FILES DIRS BUCKET > dump.json
"""
import json
import random
import sys

files, dirs, bucket = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(7)
out = sys.stdout
t = [1_700_000_000, 0]
per_dir = -(-files // dirs)
sizes = [rng.randint(1 << 10, 256 << 10) for _ in range(files)]
first_file = dirs + 2
setting = {
    "name": "bench-dump", "uuid": "00000000-0000-4000-8000-000000000001",
    "storage": "file", "bucket": bucket, "block_size": 4 << 20,
    "capacity": 0, "inodes": 0, "version": 1,
}
counters = {
    "nextInode": first_file + files, "nextSession": 1, "nextSlice": files + 1,
    "totalInodes": 1 + dirs + files, "usedSpace": sum(sizes),
}
w = out.write
w('{"ferrofs_dump":1,\n"setting":' + json.dumps(setting, separators=(",", ":")))
w(',\n"counters":' + json.dumps(counters, separators=(",", ":")))
w(',\n"unlinked_open":[],\n"inodes":[\n')


def dir_rec(ino, parent, children, subdirs):
    return ('{"ino":%d,"type":"dir","mode":493,"uid":0,"gid":0,"nlink":%d,"size":0,'
            '"atime":[%d,0],"mtime":[%d,0],"ctime":[%d,0],"parent":%d,"next_seq":%d}'
            % (ino, 2 + subdirs, t[0], t[0], t[0], parent, 3 + children))


w(dir_rec(1, 1, dirs, dirs))
counts = [min(per_dir, files - d * per_dir) for d in range(dirs)]
for d in range(dirs):
    w(",\n" + dir_rec(2 + d, 1, max(counts[d], 0), 0))
for i in range(files):
    s = sizes[i]
    w(',\n{"ino":%d,"type":"file","mode":420,"uid":1000,"gid":1000,"nlink":1,"size":%d,'
      '"atime":[%d,0],"mtime":[%d,0],"ctime":[%d,0],"chunks":[{"index":0,"slices":[[0,%d,%d,0,%d]]}]}'
      % (first_file + i, s, t[0], t[0], t[0], i + 1, s, s))
w('\n],\n"entries":[\n')
sep = ""
for d in range(dirs):
    w('%s{"parent":1,"name":"d%04d","ino":%d,"type":"dir","seq":%d}' % (sep, d, 2 + d, 3 + d))
    sep = ",\n"
for i in range(files):
    d, k = divmod(i, per_dir)
    w(',\n{"parent":%d,"name":"f%07d.jpg","ino":%d,"type":"file","seq":%d}'
      % (2 + d, i, first_file + i, 3 + k))
w('\n],\n"deleted_slices":[],\n"staged_slices":[]}\n')
