"""A journey worker as its own OS process, for ``test_concurrency_pg``: the engine's claim-and-execute loop
and the jobs loop (webhook steps are jobs), against the database in ``TSUNAGU_DATABASE_URL``, until the
file ``argv[2]`` exists.

With ``argv[3]`` (a path), the process holds inside the first step it executes: it writes its id to that
file and sleeps there, its turn open and uncommitted, so the test can SIGKILL it mid-step.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    worker_id, stop = argv[0], Path(argv[1])
    hold = Path(argv[2]) if len(argv) > 2 else None
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    import django

    django.setup()
    from tsunagu.core.jobs import jobs_run_due
    from tsunagu.journeys import engine, handlers  # noqa: F401 - handlers registers the webhook job

    if hold is not None:
        real = engine._EXECUTE["split"]

        def held(*args: Any) -> Any:
            hold.write_text(worker_id)
            time.sleep(3600)
            return real(*args)

        engine._EXECUTE["split"] = held
    while not stop.exists():
        ran = engine.runs_run_due(worker_id=worker_id, limit=50)
        ran += jobs_run_due(worker_id=worker_id, limit=20)
        if not ran:
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
