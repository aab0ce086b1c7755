"""Summarise valgrind memcheck logs: which errors and definite leaks involve the extension.

    python tools/memcheck_report.py valgrind.*.log

An error "involves the extension" when any frame of any of its stacks (where it happened, where
the block was allocated or freed, where an uninitialised value came from) is in
micrograd_fast._engine. Those are printed in full; the rest (CPython's own noise) only counted.
Exit status 1 when an extension error or definite leak is found.
"""
import re
import sys

START = re.compile(
    r"^(Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|"
    r"Syscall param|Source and destination overlap|Argument '.*' of function .* fishy|"
    r"[\d,]+ (\(.*\) )?bytes in [\d,]+ blocks are definitely lost)")
ENGINE = re.compile(r"_engine|__pyx_|\.pyx:|\.pxi:|mgf_")


def blocks(path):
    """Each error report of a log as a list of lines (without the ==pid== prefix)."""
    block = None
    with open(path, errors="replace") as f:
        for raw in f:
            line = re.sub(r"^==\d+== ?", "", raw.rstrip("\n"))
            if block is None:
                if START.match(line):
                    block = [line]
            elif line.strip() == "" and not (len(block) > 1 and block[-1].startswith(" Address")):
                yield block
                block = None
            else:
                block.append(line)
    if block:
        yield block


def main(paths):
    ours, other, summaries = [], 0, []
    for path in paths:
        for block in blocks(path):
            if any(ENGINE.search(line) for line in block):
                ours.append((path, block))
            else:
                other += 1
        with open(path, errors="replace") as f:
            summaries += [line.strip() for line in f if "ERROR SUMMARY" in line]
    for path, block in ours:
        print(f"--- {path}")
        print("\n".join(block))
    print(f"memcheck: {len(paths)} log(s); {len(ours)} error(s)/definite leak(s) involving "
          f"micrograd_fast._engine; {other} elsewhere (CPython / other extensions)")
    for s in summaries:
        print("  ", s)
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
