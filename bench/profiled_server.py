"""
marvinctld under cProfile counting CPU time, not wall time (used by
bench_geni.py --profile; not a test).

A wall-clock profile of a server sharing two cores with its client charges
the server's socket writes with the time the client ran after being woken;
process CPU time does not. The stats are written when the server stops.

Run: python bench/profiled_server.py STATS-FILE marvinctld-arguments...
"""

from __future__ import annotations

import cProfile
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from am.ctl.service import main  # noqa: E402

if __name__ == "__main__":
    profiler = cProfile.Profile(time.process_time)
    try:
        profiler.runcall(main, sys.argv[2:])
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(sys.argv[1])
