#!/usr/bin/env python3
"""Where the bytes of a wasm module go, by section and by code owner (names from the name section).

Usage: python3 wasm/size-report.py [WASM] [TOP]
WASM defaults to the plain build's cargo output, target/wasm-plain/wasm32-unknown-unknown/
release/sona_wasm.wasm (what `wasm/build.sh` compiles before wasm-bindgen and wasm-opt strip
the names; sizes there are larger than the shipped file, the shares are what matters).
"gz" columns gzip -9 each group's bytes on their own: indicative, they do not add up exactly.
Standard library only; no twiggy needed.
"""
import collections
import gzip
import re
import sys


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def name(b, i):
    n, i = leb(b, i)
    return b[i:i + n].decode("utf8", "replace"), i + n


def parse(b):
    assert b[:4] == b"\0asm", "not a wasm module"
    i, sections, imports, bodies, names, data = 8, [], 0, [], {}, b""
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        end = j + size
        if sid == 0:
            nm, k = name(b, j)
            sections.append(("custom " + nm, size))
            while nm == "name" and k < end:
                sub = b[k]
                ssz, k2 = leb(b, k + 1)
                if sub == 1:  # function names
                    cnt, p = leb(b, k2)
                    for _ in range(cnt):
                        idx, p = leb(b, p)
                        names[idx], p = name(b, p)
                k = k2 + ssz
        else:
            sections.append((["custom", "type", "import", "function", "table", "memory", "global",
                              "export", "start", "element", "code", "data", "datacount"][sid], size))
            if sid == 2:  # count imported functions (they take the first function indices)
                cnt, p = leb(b, j)
                for _ in range(cnt):
                    _, p = name(b, p)
                    _, p = name(b, p)
                    kind = b[p]
                    p += 1
                    if kind == 0:
                        _, p = leb(b, p)
                        imports += 1
                    elif kind == 1:
                        p += 1
                        fl = b[p]
                        p += 1
                        _, p = leb(b, p)
                        if fl & 1:
                            _, p = leb(b, p)
                    elif kind == 2:
                        fl = b[p]
                        p += 1
                        _, p = leb(b, p)
                        if fl & 1:
                            _, p = leb(b, p)
                    else:
                        p += 2
            elif sid == 10:
                cnt, p = leb(b, j)
                for f in range(cnt):
                    n, q = leb(b, p)
                    bodies.append((imports + f, b[p:q + n]))
                    p = q + n
            elif sid == 11:
                data = b[j:end]
        i = end
    return sections, bodies, names, data


SUBST = [("$LT$", "<"), ("$GT$", ">"), ("$RF$", "&"), ("$BP$", "*"), ("$C$", ","), ("$u20$", " "),
         ("$u27$", "'"), ("$u5b$", "["), ("$u5d$", "]"), ("$u7b$", "{"), ("$u7d$", "}"),
         ("$u3b$", ";"), ("$u2b$", "+"), ("$u22$", '"'), ("$SP$", "@"), ("..", "::")]


def demangle(s):
    """Legacy Rust mangling (_ZN…E) to a readable path; v0 (_R…) names are left as they are."""
    if not s.startswith("_ZN"):
        return s
    i, parts = 3, []
    while i < len(s) and s[i].isdigit():
        j = i
        while s[j].isdigit():
            j += 1
        n = int(s[i:j])
        parts.append(s[j:j + n])
        i = j + n
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    t = "::".join(parts)
    for a, r in SUBST:
        t = t.replace(a, r)
    return t


# First match wins: serde glue is charged to the format it serves, then crates by name.
OWNERS = ["unicode_normalization", "rmp_serde", "rmp::", "serde_json", "serde", "sona_wasm",
          "sona_core", "wasm_bindgen", "js_sys", "dlmalloc", "hashbrown", "flt2dec", "fmt",
          "zmij", "half", "crc32fast", "alloc", "core", "std"]


def owner(raw):
    d = demangle(raw)
    if "Deserialize" in d or "Serialize" in d or "serde_core" in d:
        for k in ("rmp_serde", "serde_json"):
            if k in d:
                return "serde + " + k
        return "serde (derives, other)"
    for k in OWNERS:
        if k in d:
            return k.rstrip(":")
    return "other (wasm-bindgen stubs, libm, exports)"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/wasm-plain/wasm32-unknown-unknown/release/sona_wasm.wasm"
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    b = open(path, "rb").read()
    sections, bodies, names, data = parse(b)
    gz = lambda x: len(gzip.compress(x, 9))
    print(f"{path}: {len(b)} bytes, gzip -9 {gz(b)}")
    for s, n in sections:
        print(f"  {s:32} {n:9}")
    code = b"".join(x for _, x in bodies)
    print(f"data section {len(data)} bytes (gzip {gz(data)}); code {len(code)} bytes (gzip {gz(code)}) in {len(bodies)} functions")
    groups = collections.defaultdict(list)
    for idx, body in bodies:
        groups[owner(names.get(idx, "?"))].append(body)
    print("code by owner:          bytes    share     gz")
    for k, v in sorted(groups.items(), key=lambda kv: -sum(map(len, kv[1]))):
        n = sum(map(len, v))
        print(f"  {k:40} {n:8} {100 * n / len(code):5.1f}% {gz(b''.join(v)):7}")
    print(f"largest {top} functions:")
    for idx, body in sorted(bodies, key=lambda x: -len(x[1]))[:top]:
        print(f"  {len(body):7}  {demangle(names.get(idx, '?'))[:140]}")


if __name__ == "__main__":
    main()
