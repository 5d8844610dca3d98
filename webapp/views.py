"""Helpers the artist and label pages share: a work's page, statements, on-chain actions."""

from __future__ import annotations

import json

from flask import Response, abort, flash, g, request

from ledger import analytics, gasless
from ledger.errors import LedgerError, UserError
from ledger.statements import parse_period, statement

from .money import usd
from .runtime import RelayerUnavailable, engine, portal_settings, relayer

PENDING = ("queued", "awaiting_signature", "submitted")


def period_from_args():
    """?period=2026-11 | all, or ?from=&to= months (default all time); 400 when malformed."""
    args = request.args
    try:
        if args.get("from") or args.get("to"):
            return parse_period(None, args.get("from") or None, args.get("to") or None)
        return parse_period(args.get("period") or "all")
    except UserError as exc:
        abort(400, description=str(exc))


def statement_download(address: str):
    """The payee's statement as `ledger statement` writes it (CSV or JSON)."""
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "json"):
        abort(400, description="format is csv or json")
    st = statement(engine(), address, period_from_args())
    body, mimetype = (st.to_csv(), "text/csv") if fmt == "csv" else (st.to_json(), "application/json")
    name = f"statement-{address}-{st.period.label.replace('..', '_to_')}.{fmt}"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def chart_payload(work_ids: list[int], first=None, last=None) -> dict:
    """Series for Chart.js (earnings as dollars in exact decimal strings, parsed by the page)."""
    k = portal_settings().k_anonymity
    daily = analytics.plays_over_time(engine(), work_ids, "day", first, last)
    monthly = analytics.plays_over_time(engine(), work_ids, "month", first, last)
    territories = analytics.plays_by_territory(engine(), work_ids, k, first, last)
    totals = territories.totals_by_territory()

    def series(points):
        return {
            "labels": [p.bucket for p in points],
            "plays": [p.plays for p in points],
            "earnings": [_dollars(p.earnings) for p in points],
        }

    return {
        "day": series(daily),
        "month": series(monthly),
        "territory": {
            "labels": list(totals),
            "plays": [c.plays for c in totals.values()],
            "earnings": [_dollars(c.earnings) for c in totals.values()],
        },
        "k": k,
    }


def script_json(value) -> str:
    """JSON safe inside <script type="application/json"> (no '</script>' can be formed)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _dollars(units: int) -> str:
    return usd(units).replace("$", "").replace(",", "")


def work_context(work_id: int) -> dict:
    info = analytics.work(engine(), work_id)
    if info is None:
        abort(404, description="no such work")
    history = analytics.split_history(engine(), work_id)
    k = portal_settings().k_anonymity
    return {
        "work": info,
        "split": history[-1].shares if history else [],
        "split_history": history,
        "terms": analytics.current_terms(engine(), work_id),
        "licensees": analytics.licensees(engine(), work_id),
        "unlicensed": analytics.unlicensed_plays(engine(), work_id),
        "territories": analytics.plays_by_territory(engine(), [work_id], k),
        "monthly": analytics.plays_over_time(engine(), [work_id], "month"),
        "chart_json": script_json(chart_payload([work_id])),
        "pending": gasless.actions_of(engine(), g.user.id, work_id=work_id, statuses=PENDING),
    }


def run_action(action) -> None:
    """Runs a queued on-chain action now when the relayer can, and tells the user what happened."""
    try:
        done = relayer().run(action, g.user, portal_settings().secret_key)
    except RelayerUnavailable as exc:
        flash(f"Queued: it will be sent through the gasless relayer once it is available ({exc}).", "warning")
        return
    except gasless.GasBudgetExceeded as exc:
        flash(f"Not sent: {exc}", "error")
        return
    except LedgerError as exc:
        flash(f"The chain refused it: {exc}", "error")
        return
    if done.status == "awaiting_signature":
        flash("Sign the request with your wallet on the actions page to send it.", "warning")
    else:
        flash(f"Confirmed on chain ({done.tx_hash}); the pages show it once indexed.", "success")
