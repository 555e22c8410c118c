"""The demo workspace: 「つなぐマート」, a Japanese retailer with a web shop, an app, email newsletters, a LINE
official account, stores with POS tills and a call centre.

``tsunagu demo`` (and so ``make run``) calls ``demo_load``. It is idempotent: once the ``demo`` workspace
exists it only reports the login again. The people and their behaviour are simulated with a seeded
``random.Random`` and a seeded Faker ja_JP, so every install gets the same demo (shifted to the day it is
loaded). Every event is a Segment-spec payload validated with ``parse_event``, appended to the ingest log
with ``events_append`` and applied by the applier — the path of ``/v1/batch`` — so the profiles, identities
and merges in the demo are exactly what the same traffic would produce through the API.
"""

from tsunagu.demo.catalog import DEFAULT_PASSWORD, DEMO_SLUG, DEMO_USERNAME
from tsunagu.demo.loader import demo_load

__all__ = ["DEFAULT_PASSWORD", "DEMO_SLUG", "DEMO_USERNAME", "demo_load"]
