"""Entry point of a worker process: ``python -m refrpc.runtime.worker``."""

from ._cluster import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
