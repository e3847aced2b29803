"""A scheduler replica as its own process, for the fail-over tests.

``python -m tests.scheduler.contender DATA_DIR DATABASE_URL`` starts the real scheduler, with the
shipped ``leader_poll_s`` default, and
prints ``started <pid>`` once, then ``leader <pid> <unix time>`` when it becomes the leader; it runs until
killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from oracle.config import Settings
from oracle.context import open_context
from oracle.scheduler import SchedulerOptions, start_scheduler


def main() -> None:
    data_dir, url = Path(sys.argv[1]), sys.argv[2]
    ctx = open_context(Settings(data_dir=data_dir, database_url=url))
    handle = start_scheduler(ctx, SchedulerOptions(chain_jobs=False, catch_up=False))
    print(f"started {__import__('os').getpid()}", flush=True)
    while not handle.wait_until_leader(0.05):
        pass
    print(f"leader {__import__('os').getpid()} {time.time():.3f}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
