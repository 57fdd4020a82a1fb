#!/usr/bin/env python3
"""Writes the tar-quirks corpus: one small archive per way real generators end a tar stream,
and two truncated ones, each with the tree it must give (`NAME.expected`).

The archives are built with Python's `tarfile` header encoder (an implementation independent
of ocikit's tar reader and writer); only the end of each stream is arranged by hand. The
expected trees are written from the entry list below, not read back from any archive.
Run it from anywhere: `python3 tests/corpus/tar-quirks/gen.py`. The output is deterministic.

Expected-tree lines, sorted by path: `dir MODE PATH`, `file MODE SIZE SHA256 PATH`,
`symlink PATH -> TARGET`; or the single line `refused: truncated`.
"""

import hashlib
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
MTIME = 1_700_000_000

# (type, name, mode, data or link target); the last file's size is not a multiple of 512,
# so that "no final padding" differs from "no end blocks".
ENTRIES = [
    ("dir", "etc", 0o755, None),
    ("file", "etc/hostname", 0o644, b"quirks\n"),
    ("symlink", "etc/localtime", 0o777, "../usr/share/zoneinfo/UTC"),
    ("dir", "usr", 0o755, None),
    ("dir", "usr/bin", 0o755, None),
    ("file", "usr/bin/tool", 0o755, b"#!/bin/sh\necho tool\n"),
    ("file", "usr/bin/.wh.gone", 0o644, b""),
    ("file", "usr/lib-data", 0o600, bytes(range(256)) * 2 + b"tail" * 50),
]


def header(kind, name, mode, payload):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = MTIME
    info.uname = info.gname = "root"
    if kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = payload
    else:
        info.type = tarfile.REGTYPE
        info.size = len(payload)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def body():
    """Every entry with its data and padding; the offsets of the last header and data."""
    out = io.BytesIO()
    last_header = last_data_end = 0
    for kind, name, mode, payload in ENTRIES:
        last_header = out.tell()
        out.write(header(kind, name, mode, payload))
        if kind == "file":
            out.write(payload)
            last_data_end = out.tell()
            out.write(b"\0" * (-len(payload) % 512))
    return out.getvalue(), last_header, last_data_end


def expected_tree():
    lines = []
    for kind, name, mode, payload in ENTRIES:
        base = name.rsplit("/", 1)[-1]
        if base.startswith(".wh."):
            continue  # a whiteout of nothing: applied, never materialised
        if kind == "dir":
            lines.append((name, f"dir {mode:o} {name}"))
        elif kind == "symlink":
            lines.append((name, f"symlink {name} -> {payload}"))
        else:
            digest = hashlib.sha256(payload).hexdigest()
            lines.append((name, f"file {mode:o} {len(payload)} {digest} {name}"))
    return "".join(line + "\n" for _, line in sorted(lines))


def main():
    data, last_header, last_data_end = body()
    assert len(data) % 512 == 0 and last_data_end % 512 != 0
    zero = b"\0" * 512
    cases = {
        # umoci 0.4.7 `insert`: no end blocks and no padding after the last entry's data.
        "no-final-padding": data[:last_data_end],
        # Padded, but no end blocks.
        "no-end-blocks": data,
        # One zero block where POSIX asks for two.
        "one-end-block": data + zero,
        # GNU tar's default: two end blocks, then zeros up to a 10240-byte record, and more.
        "trailing-zero-blocks": data + zero * 2 + b"\0" * (-(len(data) + 1024) % 10240) + zero * 4,
    }
    refused = {
        "ends-inside-header": data[: last_header + 200],
        "ends-inside-data": data[: last_data_end - 10],
    }
    tree = expected_tree()
    for name, archive in cases.items():
        with open(os.path.join(HERE, name + ".tar"), "wb") as f:
            f.write(archive)
        with open(os.path.join(HERE, name + ".expected"), "w") as f:
            f.write(tree)
    for name, archive in refused.items():
        with open(os.path.join(HERE, name + ".tar"), "wb") as f:
            f.write(archive)
        with open(os.path.join(HERE, name + ".expected"), "w") as f:
            f.write("refused: truncated\n")


if __name__ == "__main__":
    main()
