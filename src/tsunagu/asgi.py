"""ASGI entry point for running tsunagu under another ASGI server (``tsunagu web`` needs none of this).

The same application ``tsunagu web`` serves: requests read whole on the event loop, then the WSGI stack on a
thread pool. Not Django's ASGI handler: it would run every synchronous view on one thread per process."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")

from tsunagu.server import load_application  # noqa: E402  (settings module chosen first)

application = load_application()
