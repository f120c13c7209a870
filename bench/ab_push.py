"""A/B of push variants in one run (issue 17 follow-up): each variant to a fresh empty
registry, alternating, `runs` times; prints medians and ratios with the load average.
Usage: python bench/ab_push.py RUNS IMAGE[,IMAGE…] NAME='ARGS' … [crane]
(an ARG `@/path/to/ociforge` runs that build instead of this one)."""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench_buildah import loadavg, locked_time
from bench_crane import crane, layouts, ociforge, process_cpu
from push import Registry
from seeds_setup import prepare


def main() -> None:
    runs, images = int(sys.argv[1]), sys.argv[2].split(",")
    variants = dict(a.split("=", 1) for a in sys.argv[3:] if "=" in a)
    with_crane = "crane" in sys.argv[3:]
    seeds = prepare(full=False)
    scratch = Path(tempfile.mkdtemp(prefix="ab-push-", dir=os.environ.get("TMPDIR")))
    store = scratch / "store"
    os.system(f"cp -al {seeds.store} {store}")
    lays = layouts(seeds, store, scratch) if with_crane else {}
    t: dict[str, list[float]] = {k: [] for k in [*variants, *(["crane"] if with_crane else [])]}
    print("load before", loadavg(), file=sys.stderr)
    for i in range(runs):
        order = list(t) if i % 2 == 0 else list(reversed(t))
        for name in order:
            reg = Registry(scratch / f"reg-{name}-{i}")
            try:
                ref = f"{reg.host}/spark"
                if name == "crane":
                    argvs = [crane("push", str(lays[n.removeprefix("spark-")]),
                                   f"{ref}:{n}") for n in images]
                else:
                    (store / "ociforge" / "registry" / "blob-locations.json").unlink(
                        missing_ok=True)
                    args = shlex.split(variants[name])
                    argv = ociforge(store, seeds, "push", *images, "--to", ref,
                                    *[a for a in args if not a.startswith("@")])
                    # `@/path/to/ociforge`: another checkout's build (before/after).
                    argvs = [[*(a[1:] for a in args if a.startswith("@")), *argv[1:]]
                             if any(a.startswith("@") for a in args) else argv]
                r0, g0 = resource.getrusage(resource.RUSAGE_CHILDREN), process_cpu(reg.proc.pid)
                t[name].append(locked_time(argvs))
                r1, g1 = resource.getrusage(resource.RUSAGE_CHILDREN), process_cpu(reg.proc.pid)
                cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                print(f"  {name:<12} {t[name][-1]:.3f} s  cpu client {cpu:.2f} s registry "
                      f"{g1 - g0:.2f} s  load {loadavg()}", file=sys.stderr)
            finally:
                reg.stop()
    print("load after", loadavg())
    base = statistics.median(t["crane"]) if with_crane else None
    for k, v in t.items():
        m = statistics.median(v)
        print(f"{k:<12} median {m:.3f} s  runs {[round(x, 3) for x in v]}"
              + (f"  {m / base:.2f}x crane" if base else ""))
    os.system(f"rm -rf {scratch}")


if __name__ == "__main__":
    main()
