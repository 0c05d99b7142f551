#!/usr/bin/env python3
"""Lists the functions on the pages of a binary's code that are in the page
cache, in the order they are in the binary: after a run that read the binary
one page at a time (no readahead, cache dropped first), those are the pages
the run touched. scripts/hot-code-order.sh runs it.

usage: hot-code-pages.py BINARY LINKER_MAP OUT
LINKER_MAP: LLD's -Map output for BINARY, which names each function's
section and where it went (BINARY itself is stripped)."""
import ctypes
import ctypes.util
import mmap
import os
import re
import subprocess
import sys

PAGE = mmap.PAGESIZE


def cached_pages(path):
    """One bool per page of the file: in the page cache or not (mincore)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.POINTER(ctypes.c_ubyte)]
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    pages = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * pages)()
    if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
        sys.exit(f"mincore {path}: errno {ctypes.get_errno()}")
    return [bool(v & 1) for v in vec]


def text_section(path):
    """(address, file offset, size) of .text."""
    out = subprocess.run(["readelf", "-SW", path], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            return tuple(int(g, 16) for g in m.groups())
    sys.exit(f"{path} has no .text")


# An input section in LLD's map: VMA LMA SIZE ALIGN file:(.text.<symbol>),
# where the compiler may have put a function it thinks cold or hot in
# .text.unlikely.<symbol> or .text.hot.<symbol>.
SECTION = re.compile(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S.*:\(\.text\.(?:(?:unlikely|hot|startup|exit|split)\.)?(\S+)\)$")


def main():
    binary, link_map, out = sys.argv[1:4]
    cached = cached_pages(binary)
    text_addr, text_offset, text_size = text_section(binary)
    hot = []
    with open(link_map) as f:
        for line in f:
            m = SECTION.match(line)
            if not m:
                continue
            addr, size, symbol = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if not text_addr <= addr < text_addr + text_size:
                continue
            first = (text_offset + addr - text_addr) // PAGE
            last = (text_offset + addr - text_addr + max(size, 1) - 1) // PAGE
            if any(cached[first:last + 1]):
                hot.append((addr, size, symbol))
    hot.sort()
    with open(out, "w") as f:
        for _, _, symbol in hot:
            f.write(symbol + "\n")
    first = text_offset // PAGE
    touched = sum(cached[first:(text_offset + text_size) // PAGE + 1])
    print(f"{touched * PAGE / 2**20:.2f} MiB of {text_size / 2**20:.2f} MiB of code read; "
          f"{len(hot)} functions on those pages ({sum(s for _, s, _ in hot) / 2**20:.2f} MiB) -> {out}")


if __name__ == "__main__":
    main()
