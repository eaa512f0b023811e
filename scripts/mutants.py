#!/usr/bin/env python3
"""Injects each of six known pool bugs, one at a time, and shows the simulation
catches it: the seed and the number of steps after which it did, and what broke.
Every source file is restored afterwards, whatever happens.

  scripts/mutants.py [--sequences N]      (make mutants)
"""
import argparse, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = "Sources/PrezeroCore/"

# (name, file, old, new): each a bug DESIGN.md's invariants forbid.
MUTANTS = [
    ("recovery moves scrubbing/ to clean/", CORE + "Recovery.swift",
     "return .move(from: .scrubbing, name: f.name, to: .dirty,",
     "return .move(from: .scrubbing, name: f.name, to: .clean,"),
    ("release skips the holder check", CORE + "Pool/Transitions.swift",
     "        guard holders.isFree(file.inode) else { return .held }\n", ""),
    ("a scrub cut short by a shutdown still reaches clean/", CORE + "Pool/PoolOp.swift",
     "e.append(back.bytes == 0 ? .unlink(ref) : .rename(ref, to: FileRef(k.mount, .dirty, back.description)))",
     "e.append(back.bytes == 0 ? .unlink(ref) : .rename(ref, to: FileRef(k.mount, .clean, back.description)))"),
    ("claim takes from dirty/ when clean/ is empty", CORE + "Pool/Transitions.swift",
     "let clean = nodes.filter { $0.key.mount == mi }.values.flatMap { $0.clean.map(CleanFile.init) }",
     "var source = FileState.clean\n"
     "        var clean = nodes.filter { $0.key.mount == mi }.values.flatMap { $0.clean.map(CleanFile.init) }\n"
     "        if clean.isEmpty { source = .dirty; clean = nodes.filter { $0.key.mount == mi }.values.flatMap { $0.dirty.map(CleanFile.init) } }"),
    ("give-back counts free pages host-wide instead of per node", CORE + "Pool/Transitions.swift",
     "let have = counters[k]?.free ?? 0",
     "let have = counters.values.reduce(0) { $0 + $1.free }"),
    ("a truncated claim forgets to return the cut tail", CORE + "Pool/PoolOp.swift",
     "case .truncated: e.append(.truncate(t.leased, to: t.bytes))",
     "case .truncated: break"),
]
# The dirty-source mutant also needs the ticket to take the file from dirty/.
EXTRA = {
    "claim takes from dirty/ when clean/ is empty": [
        (CORE + "Pool/Transitions.swift",
         "let t = ClaimTicket(key: key, mount: mi, picked: f.name, outcome: choice.outcome, request: c)",
         "let t = ClaimTicket(key: key, mount: mi, picked: f.name, outcome: choice.outcome, request: c, source: source)"),
        (CORE + "Pool/Transitions.swift",
         "nodes[k]?.clean.removeAll { $0 == f.name }",
         "nodes[k]?.clean.removeAll { $0 == f.name }; nodes[k]?.dirty.removeAll { $0 == f.name }"),
    ],
}

def sh(cmd, env=None):
    return subprocess.run(cmd, cwd=ROOT, shell=True, capture_output=True, text=True, env=env)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=10000, help="sequences per mutant (default 10000)")
    a = ap.parse_args()
    rows, missed = [], 0
    for name, path, old, new in MUTANTS:
        edits = [(path, old, new)] + EXTRA.get(name, [])
        saved = {}
        try:
            for p, o, n in edits:
                full = os.path.join(ROOT, p)
                text = saved.get(p) or open(full).read()
                saved.setdefault(p, text)
                cur = open(full).read()
                if o not in cur:
                    sys.exit(f"mutants: '{name}': the code it changes is gone from {p}; update scripts/mutants.py")
                open(full, "w").write(cur.replace(o, n, 1))
            b = sh("swift build --build-tests 2>&1")
            if b.returncode != 0:
                sys.exit(f"mutants: '{name}' does not build:\n{b.stdout[-3000:]}")
            env = dict(os.environ, SIM_SEQUENCES=str(a.sequences), SIM_MAX_FAILURES="1")
            t = sh("swift test --skip-build --filter Simulation 2>&1", env=env)
            m = re.search(r"seed (\d+) broke an invariant after (\d+) steps: (?:after step \d+ \([^)]*\): )?(.*)", t.stdout)
            s = re.search(r"shortest failing sequence \((\d+) steps\)", t.stdout)
            if m:
                rows.append((name, m.group(1), m.group(2), s.group(1) if s else "?", m.group(3)[:110]))
            else:
                rows.append((name, "-", "-", "-", "NOT CAUGHT"))
                missed += 1
            print(f"mutants: {name}: {'caught' if m else 'NOT CAUGHT'}", flush=True)
        finally:
            for p, text in saved.items():
                open(os.path.join(ROOT, p), "w").write(text)
    print()
    print("| injected bug | seed | steps | shortest | what broke |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    sh("swift build --build-tests 2>&1")
    sys.exit(1 if missed else 0)

main()
