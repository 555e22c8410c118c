"""Summarise py-spy's raw (collapsed) output: ``python -m bench.flame FILE [--top N] [--match TEXT]``.

Prints, for the samples of the server processes, the share of time spent in (inclusive) and directly in
(self) each function, so a profile can be read in a terminal and quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LOCATION = re.compile(r"\s*\(([^)]*)\)$")


def _name(frame: str) -> str:
    match = _LOCATION.search(frame)
    where = match.group(1) if match else ""
    where = re.sub(r"^.*?/(site-packages|src|lib/python3\.\d+)/", "", where)
    where = re.sub(r":\d+$", "", where)
    return f"{_LOCATION.sub('', frame)} ({where})" if where else frame


def summarise(path: Path, top: int, match: str | None) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if match and match not in stack:
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if not f.startswith("process ")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    out = [f"{total} samples" + (f" with {match!r} on the stack" if match else "")]
    out.append("\ninclusive (time in the function and what it calls):")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    out.append("\nself (time in the function's own code):")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flame")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match")
    args = parser.parse_args()
    print(summarise(args.file, args.top, args.match))


if __name__ == "__main__":
    main()
