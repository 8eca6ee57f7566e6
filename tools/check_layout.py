#!/usr/bin/env python3
"""check_layout.py: the folder rules of DESIGN.md §2 and issue 17, as checks
that fail. Run from the source root with the build directory as argument:

    python3 tools/check_layout.py build

- lejepa-train links no libvips (ldd): it needs no copy of the dataset's
  images, only the index (proto/dataset.c);
- loaders/ and eval/ include no header of trainer/;
- proto/ (linked by every program, loaders included) includes no BLAS or
  OpenMP header: thread set-up lives in eval/compute;
- no struct declared in a trainer/ header has more than MAX_FIELDS fields;
- no C source or header is over MAX_LINES lines.
Prints every violation and exits 1 if there is any.
"""
import os
import re
import subprocess
import sys

MAX_FIELDS = 25
MAX_LINES = 800
FOLDERS = ["proto", "loaders", "trainer", "eval", "tools", "tests"]


def sources(folder, exts=(".c", ".h")):
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(exts):
                yield os.path.join(root, f)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = re.match(r'\s*#\s*include\s*[<"]([^>"]+)[>"]', line)
            if m:
                yield n, m.group(1)


def struct_fields(path):
    """(name, line, fields) of every struct body in a header: members are
    the ';'-ended declarations at brace depth 1 (a comma list counts as
    one declaration per name)."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    for m in re.finditer(r"\bstruct\s+(\w+)\s*\{", text):
        depth, i, start = 1, m.end(), m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[start:i - 1]
        flat, d = [], 0
        for ch in body:
            d += {"{": 1, "}": -1}.get(ch, 0)
            flat.append(ch if d == 0 or ch in "{}" else " ")
        fields = 0
        for decl in "".join(flat).split(";"):
            decl = re.sub(r"\{[^}]*\}", "", decl).strip()
            if decl:
                fields += decl.count(",") + 1
        yield m.group(1), text[:m.start()].count("\n") + 1, fields


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    bad = []
    train = os.path.join(build, "trainer", "lejepa-train")
    out = subprocess.run(["ldd", train], capture_output=True, text=True)
    if out.returncode != 0:
        bad.append(f"{train}: ldd failed: {out.stderr.strip()}")
    elif "libvips" in out.stdout:
        bad.append(f"{train} links libvips")
    trainer_headers = {f for f in os.listdir("trainer") if f.endswith(".h")}
    for folder in ("loaders", "eval"):
        for path in sources(folder):
            for n, inc in includes(path):
                if os.path.basename(inc) in trainer_headers or inc.startswith("trainer/"):
                    bad.append(f"{path}:{n}: includes trainer/ header {inc}")
    blas = re.compile(r"^(cblas|omp|openblas_config|lapacke?|f77blas)\.h$")
    for path in sources("proto"):
        for n, inc in includes(path):
            if blas.match(os.path.basename(inc)):
                bad.append(f"{path}:{n}: proto/ includes BLAS/OpenMP header {inc}")
    for path in sources("trainer", (".h",)):
        for name, line, fields in struct_fields(path):
            if fields > MAX_FIELDS:
                bad.append(f"{path}:{line}: struct {name} has {fields} fields "
                           f"(more than {MAX_FIELDS})")
    for folder in FOLDERS:
        for path in sources(folder):
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES:
                bad.append(f"{path}: {lines} lines (more than {MAX_LINES})")
    for b in bad:
        print("check_layout:", b)
    print(f"check_layout: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
