"""Make PyPI's CUDA build of torch import on a machine without the NVIDIA libraries.

PyPI only offers CUDA builds of torch for Linux x86_64, and they pull in several GB of
`nvidia-*` wheels. The parity tooling only runs torch on the CPU, where none of those
libraries is ever called, but the dynamic loader still wants every library named in
DT_NEEDED and every symbol resolved (Python loads extensions with RTLD_NOW).

This script writes, next to torch's own libraries, one small stub library per missing
NVIDIA library: it exports every symbol (with its symbol version) that torch's libraries
import from it. Stub functions return 100 (cudaErrorNoDevice) and are never reached on
CPU code paths; torch.cuda.is_available() must not be relied upon in this venv.

Usage: python cpu_stubs.py   (run with the venv's python; idempotent)
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

import importlib.util

spec = importlib.util.find_spec("torch")
TORCH = os.path.dirname(spec.origin)
LIB = os.path.join(TORCH, "lib")


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", run("readelf", "-dW", path))


def system_libs():
    libs = {}
    for line in run("ldconfig", "-p").splitlines()[1:]:
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2):
            libs.setdefault(m.group(1), m.group(3))
    return libs


def dyn_syms(path):
    """Yield (name, version, type, bind, defined, size) of the dynamic symbols."""
    for line in run("readelf", "-W", "--dyn-syms", path).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        _, _value, size, typ, bind, _vis, ndx = parts[:7]
        name = parts[7]
        ver = None
        if "@" in name:
            name, ver = re.split(r"@+", name, maxsplit=1)
        try:
            size = int(size, 0)
        except ValueError:
            size = 8
        yield name, ver, typ, bind, ndx != "UND", size


def version_needs(path):
    """Map version name -> library file, from the .gnu.version_r section."""
    out = {}
    current = None
    for line in run("readelf", "-VW", path).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)\s+Flags", line)
        if m and current:
            out[m.group(1)] = current
    return out


def main():
    files = glob.glob(os.path.join(LIB, "*.so*")) + glob.glob(os.path.join(TORCH, "_C*.so"))
    files = [f for f in files if os.path.isfile(f) and not os.path.islink(f)
             and not f.endswith(".stub-marker")]
    sysl = system_libs()
    present = {os.path.basename(f) for f in files}
    stubs_here = {os.path.basename(f) for f in glob.glob(os.path.join(LIB, "*.stub-marker"))}
    missing = set()
    for f in files:
        for n in needed(f):
            if n not in present and n not in sysl:
                missing.add(n)
    # libraries that are already our stubs count as missing (rebuild them)
    missing |= {m[: -len(".stub-marker")] for m in stubs_here}
    if not missing:
        print("nothing missing: torch imports as is")
        return
    real = [f for f in files if os.path.basename(f) not in missing]
    defined = set()
    for f in real + [sysl[n] for n in {n for f in real for n in needed(f)} if n in sysl]:
        for name, _ver, _t, _b, is_def, _s in dyn_syms(f):
            if is_def:
                defined.add(name)
    wanted = {m: {} for m in missing}  # lib -> {(name, ver): (type, size)}
    fallback = sorted(missing)[0]
    for f in real:
        vmap = version_needs(f)
        for name, ver, typ, bind, is_def, size in dyn_syms(f):
            if is_def or bind == "WEAK" or not name:
                continue
            lib = vmap.get(ver) if ver else None
            if lib in missing:
                wanted[lib][(name, ver)] = (typ, size)
            elif lib is None and name not in defined:
                wanted[fallback][(name, None)] = (typ, size)
    with tempfile.TemporaryDirectory() as tmp:
        for lib, syms in sorted(wanted.items()):
            asm = [".text"]
            versions = {}
            for (name, ver), (typ, size) in sorted(syms.items()):
                versions.setdefault(ver, []).append(name)
                if typ == "OBJECT":
                    size = max(size, 8)
                    asm += [".data", f".globl {name}", f".type {name},@object",
                            f".size {name},{size}", f"{name}:", f".zero {size}", ".text"]
                else:
                    asm += [f".globl {name}", f".type {name},@function", f"{name}:",
                            "mov $100, %eax", "ret"]
            s = os.path.join(tmp, lib + ".s")
            with open(s, "w") as fh:
                fh.write("\n".join(asm) + "\n")
            vs = os.path.join(tmp, lib + ".map")
            with open(vs, "w") as fh:
                for ver, names in versions.items():
                    if ver is None:
                        continue
                    fh.write(f"{ver} {{ global: {'; '.join(names)}; }};\n")
                # unversioned symbols and a default node
                base = [n for n in versions.get(None, [])]
                fh.write(f"STUB_BASE {{ global: {'; '.join(base) + ';' if base else '*;'} local: *; }};\n")
            out = os.path.join(LIB, lib)
            run("gcc", "-shared", "-nostdlib", "-o", out, f"-Wl,-soname,{lib}",
                f"-Wl,--version-script={vs}", s)
            open(out + ".stub-marker", "w").close()
            print(f"stub {lib}: {len(syms)} symbols")


if __name__ == "__main__":
    sys.exit(main())
