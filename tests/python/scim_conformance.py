"""Runs scim2-tester's check_server, every check it has, against a SCIM base URL.

Usage: scim_conformance.py BASE_URL TOKEN
Prints one JSON object per check result: {"title", "status", "resource_type", "reason"}.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> None:
    base_url, token = sys.argv[1], sys.argv[2]
    http = Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    client = SyncSCIMClient(http)
    for result in check_server(client):
        print(
            json.dumps(
                {
                    "title": result.title,
                    "status": result.status.name,
                    "resource_type": getattr(result, "resource_type", None),
                    "reason": result.reason,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
