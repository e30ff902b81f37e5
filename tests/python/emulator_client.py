"""Lists the whole directory of a dirsync emulator with Google's own Python client.

An independent client: google-api-python-client (static discovery document) and google-auth
(service-account JWT bearer flow with domain-wide delegation). Prints one JSON object with the
counts, the number of pages fetched and a few facts the caller checks.

usage: emulator_client.py KEY_FILE ROOT_URL SUBJECT
"""

import json
import sys

from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

SCOPES = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.orgunit.readonly",
]


def list_all(request_fn, items_key, pages):
    items = []
    token = None
    while True:
        response = request_fn(token).execute()
        pages[items_key] = pages.get(items_key, 0) + 1
        items.extend(response.get(items_key, []))
        token = response.get("nextPageToken")
        if not token:
            return items


def main():
    key_file, root_url, subject = sys.argv[1:4]
    credentials = service_account.Credentials.from_service_account_file(
        key_file, scopes=SCOPES, subject=subject
    )
    service = build(
        "admin",
        "directory_v1",
        credentials=credentials,
        client_options={"api_endpoint": root_url.rstrip("/") + "/"},
        static_discovery=True,
        cache_discovery=False,
    )
    pages = {}
    users = list_all(
        lambda t: service.users().list(
            customer="my_customer", maxResults=37, projection="full", pageToken=t
        ),
        "users",
        pages,
    )
    groups = list_all(
        lambda t: service.groups().list(customer="my_customer", maxResults=7, pageToken=t),
        "groups",
        pages,
    )
    members = 0
    member_types = {}
    for group in groups:
        group_members = list_all(
            lambda t, g=group: service.members().list(
                groupKey=g["email"], maxResults=50, pageToken=t
            ),
            "members",
            pages,
        )
        members += len(group_members)
        for member in group_members:
            member_types[member["type"]] = member_types.get(member["type"], 0) + 1
    deleted = list_all(
        lambda t: service.users().list(customer="my_customer", showDeleted="true", pageToken=t),
        "users",
        {},
    )
    units = service.orgunits().list(customerId="my_customer", type="all").execute()
    one = service.users().get(userKey=users[-1]["primaryEmail"]).execute()
    has = service.members().hasMember(
        groupKey=groups[0]["email"], memberKey=users[0]["primaryEmail"]
    ).execute()
    try:
        service.users().get(userKey="nobody-at-all@example.com").execute()
        missing_status = 200
    except HttpError as err:
        missing_status = err.resp.status
    print(
        json.dumps(
            {
                "users": len(users),
                "distinct_users": len({u["id"] for u in users}),
                "groups": len(groups),
                "members": members,
                "member_types": member_types,
                "deleted": len(deleted),
                "org_units": len(units.get("organizationUnits", [])),
                "pages": pages,
                "get_matches": one["id"] == users[-1]["id"],
                "is_member_type": type(has.get("isMember")).__name__,
                "direct_members_count_type": type(groups[0]["directMembersCount"]).__name__,
                "missing_status": missing_status,
            }
        )
    )


if __name__ == "__main__":
    main()
