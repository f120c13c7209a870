"""cProfile of one `ociforge` command, every thread included (push uploads blobs on
worker threads, which plain cProfile misses): where a missed goal's time goes.

    python bench/profile_cli.py OUT.txt -- --store S --project P push NAME --to REF

Run in-process (same interpreter, same imports as the console script); prints and
writes the top functions by own time and by cumulative time, all threads merged,
plus the wall time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any


def profile_cli(argv: list[str], out: Path | None = None, top: int = 25) -> str:
    from ociforge.cli import cli as cli_main

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profile(*_: Any) -> None:
        p = cProfile.Profile()
        with lock:
            profiles.append(p)
        p.enable()  # replaces this hook for the thread with the profiler itself

    main = cProfile.Profile()
    threading.setprofile(start_thread_profile)
    t0 = time.perf_counter()
    main.enable()
    try:
        cli_main(args=argv, prog_name="ociforge", standalone_mode=False)
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    for p in profiles:
        p.disable()
    buf = io.StringIO()
    stats = pstats.Stats(main, *profiles, stream=buf)
    buf.write(f"ociforge {' '.join(argv)}\nwall {wall:.3f} s, {len(profiles)} worker "
              "thread(s) profiled; times summed over threads\n\n-- by own time\n")
    stats.sort_stats("tottime").print_stats(top)
    buf.write("\n-- by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    text = buf.getvalue()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


if __name__ == "__main__":
    sep = sys.argv.index("--")
    print(profile_cli(sys.argv[sep + 1:], Path(sys.argv[1])))
