"""Copy-paste snippets that send a source's events to this server. They are text for the customer's own site
or backend: the console itself loads nothing from the internet."""

from __future__ import annotations

import json
from urllib.parse import urlsplit


def analytics_js(*, write_key: str, base_url: str) -> str:
    """analytics-next (npm ``@segment/analytics-next``) pointed at this server. ``cdnSettings`` is given inline
    so the library does not ask Segment's CDN for the source's settings."""
    parts = urlsplit(base_url)
    api_host = json.dumps(f"{parts.netloc}{parts.path.rstrip('/')}/v1")
    protocol = json.dumps(parts.scheme or "https")
    key = json.dumps(write_key)
    return f"""import {{ AnalyticsBrowser }} from "@segment/analytics-next";

const segmentIo = {{ apiKey: {key}, apiHost: {api_host}, protocol: {protocol} }};

export const analytics = AnalyticsBrowser.load(
  {{ writeKey: {key}, cdnSettings: {{ integrations: {{ "Segment.io": segmentIo }} }} }},
  {{ integrations: {{ "Segment.io": segmentIo }} }},
);

analytics.identify("user-123", {{
  lastName: "山田", firstName: "花子",
  lastNameKana: "ヤマダ", firstNameKana: "ハナコ",
  email: "hanako@example.jp",
}});
analytics.page();
analytics.track("Order Completed", {{ revenue: 4980, currency: "JPY" }});
"""


def python_sdk(*, write_key: str, base_url: str) -> str:
    """The official segment-analytics-python library with ``host`` set to this server."""
    return f"""# pip install segment-analytics-python
from segment.analytics.client import Client

analytics = Client({write_key!r}, host={base_url!r})

analytics.identify("user-123", {{
    "lastName": "山田", "firstName": "花子",
    "lastNameKana": "ヤマダ", "firstNameKana": "ハナコ",
    "email": "hanako@example.jp",
}})
analytics.track("user-123", "Order Completed", {{"revenue": 4980, "currency": "JPY"}})
analytics.flush()
"""


def curl(*, write_key: str, base_url: str) -> str:
    """One track call over plain HTTP (Basic auth: the write key as user name, no password)."""
    body = json.dumps(
        {"userId": "user-123", "event": "Order Completed", "properties": {"revenue": 4980, "currency": "JPY"}},
        ensure_ascii=False,
    )
    return f"""curl -X POST '{base_url}/v1/track' \\
  -u '{write_key}:' \\
  -H 'Content-Type: application/json' \\
  -d '{body}'
"""
