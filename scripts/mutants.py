#!/usr/bin/env python3
"""Injects each of six known pool bugs, one at a time, and shows the simulation
catches it: the seed and the number of steps after which it did, and what broke.
Every source file is restored afterwards, whatever happens.

  scripts/mutants.py [--sequences N]      (make mutants)
"""
import argparse, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = "Sources/PrezeroCore/"

# (name, file, old, new): each a bug docs/DESIGN.md's invariants forbid.
MUTANTS = [
    ("a released file goes back to clean/ and serves the next tenant", CORE + "Pool/PoolOp.swift",
     "l.heldRecord(l.file.bytes), .takeBack(l.ref, node: l.file.node)]",
     "l.heldRecord(l.file.bytes), .rename(l.ref, to: FileRef(l.mount, .clean, l.file.description))]"),
    ("pages a take-back left pinned are not counted as held", CORE + "Pool/Commit.swift",
     "            if tb.held > 0 { nodes[k]?.held.append(HeldPages(id: l.heldID, lease: l.key, bytes: tb.held)) }\n", ""),
    ("held pages are not journalled before the punch (a crash forgets them)", CORE + "Pool/PoolOp.swift",
     "l.heldRecord(l.file.bytes), .takeBack(", ".takeBack("),
    ("recovery keeps a cut clean file under its old size", CORE + "Recovery.swift",
     "if f.bytes != name.bytes { return .giveBack(.clean, f.name) }", "_ = name"),
    ("a truncated claim forgets to return the cut tail", CORE + "Pool/PoolOp.swift",
     "case .truncated: e.append(.truncate(t.leased, to: t.bytes))",
     "case .truncated: break"),
    ("a new fill counts the files being filled at what they hold so far, not at their size", CORE + "Pool/Transitions.swift",
     "held: nb.cleanBytes + nb.fillingPlannedBytes,", "held: nb.cleanBytes + nb.fillingBytes,"),
]
# The reuse mutant also needs the state to list the file as clean.
EXTRA = {
    "a released file goes back to clean/ and serves the next tenant": [
        (CORE + "Pool/Commit.swift",
         "            leaseVanished(l)\n            guard case .tookBack(let tb)? = observed else { break }",
         "            leaseVanished(l)\n            nodes[NodeKey(mount: l.mount, node: l.file.node)]?.clean.append(l.file)\n"
         "            guard case .tookBack(let tb)? = observed else { break }"),
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
