"""`gateway activate-model`: asks a running gateway to change its similarity model
(`POST /admin/model`) and follows the change until it is done."""

from __future__ import annotations

import sys
import time

import httpx


def activate_model(url: str, model: str, token: str, *, wait: bool, poll_s: float = 0.5) -> int:
    if not token:
        print("gateway activate-model: the admin token is not set", file=sys.stderr)
        return 2
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        try:
            response = client.post("/admin/model", json={"model": model})
        except httpx.HTTPError as exc:
            print(f"gateway activate-model: {url}: {exc}", file=sys.stderr)
            return 1
        if response.status_code >= 400:
            message = response.json().get("error", {}).get("message", response.text)
            print(f"gateway activate-model: {message}", file=sys.stderr)
            return 2
        view = response.json()
        while wait and view["change"] and view["change"]["state"] not in ("done", "failed"):
            change = view["change"]
            print(f"{change['state']}: {change['entries_reembedded']} entries embedded again")
            time.sleep(poll_s)
            view = client.get("/admin/model").json()
    change = view["change"] or {}
    if change.get("state") == "failed":
        print(f"gateway activate-model: failed: {change.get('error')}", file=sys.stderr)
        return 1
    print(f"{view['model']} ({view['model_id']}): {change.get('state', 'already active')}")
    return 0
