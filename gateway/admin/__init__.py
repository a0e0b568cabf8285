"""The admin API under `/admin/`: bearer-token authenticated, JSON in and out."""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin.entries import entry, list_entries, purge
from gateway.admin.feedback import feedback
from gateway.admin.model import model
from gateway.admin.openapi import openapi
from gateway.admin.policies import list_policies, policy
from gateway.admin.replay import replay_report
from gateway.admin.stats import stats, stats_series
from gateway.admin.upstreams import metrics, upstreams


def routes() -> list[Route]:
    return [
        Route("/admin/openapi.json", openapi, methods=["GET"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/admin/stats/series", stats_series, methods=["GET"]),
        Route("/admin/policies", list_policies, methods=["GET"]),
        Route("/admin/policies/{category}", policy, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/admin/entries", list_entries, methods=["GET"]),
        Route("/admin/entries/{entry_id}", entry, methods=["GET", "DELETE"]),
        Route("/admin/purge", purge, methods=["POST"]),
        Route("/admin/feedback", feedback, methods=["POST"]),
        Route("/admin/upstreams", upstreams, methods=["GET"]),
        Route("/admin/replay/report", replay_report, methods=["POST"]),
        Route("/admin/model", model, methods=["GET", "POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
