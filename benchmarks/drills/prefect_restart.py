"""Drill: the Prefect server restarted while reports flow in → schedules and event-triggered stages continue,
no case stuck.

A Prefect server on a fresh PostgreSQL database, `python -m flows.serve` (the loop's deployments:
report, assess, dispatch, evaluate — event-triggered — and the scheduled SLA watch) and `linli api`
run; a report is filed through the Open311 API every --report-every s for --seconds. At
--restart-at s the Prefect server is stopped and, --down-seconds later, started again on the same
port and database; the worker and the API are not restarted. A report filed while the server is
away emits an event nobody receives: the SLA watch (every --sla-seconds, stages idle for
--stuck-minutes started again) is what recovers such a case. At the end every case must be
dispatched (or later) and the SLA watch must have run again after the restart.

    .venv/bin/python -m benchmarks.drills.prefect_restart [--seconds 90] [--down-seconds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.common import fresh_database
from benchmarks.drills.common import (
    LATER,
    Governance,
    Processes,
    ReportFiler,
    case_statuses,
    governance_env,
    last_line,
    prepare_linli,
    say,
    wait_cases,
)
from benchmarks.report_to_assignee import drop_pg_database, make_pg_database
from tests.mqtt_broker import free_port


def sla_runs_since(api: str, since: datetime) -> int:
    """Completed runs of the SLA watch that started after `since`."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
        deployments = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["sla-watch"]}}},
                                 timeout=10).json()
        ids = [d["id"] for d in deployments]
        runs = httpx.post(f"{api}/flow_runs/filter", json={
            "flow_runs": {"deployment_id": {"any_": ids}, "state": {"type": {"any_": ["COMPLETED"]}},
                          "start_time": {"after_": since.isoformat()}}, "limit": 200}, timeout=10).json()
        return len(runs)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90, help="how long reports are filed")
    parser.add_argument("--report-every", type=float, default=2.0)
    parser.add_argument("--restart-at", type=float, default=30, help="seconds into the run")
    parser.add_argument("--down-seconds", type=float, default=15, help="how long the Prefect server is away")
    parser.add_argument("--stuck-minutes", type=float, default=0.5, help="LINLI_LOOP__STUCK_MINUTES for the drill")
    parser.add_argument("--sla-seconds", type=int, default=10, help="LINLI_LOOP__SLA_INTERVAL_SECONDS")
    args = parser.parse_args()
    prefect_db = make_pg_database("linli_drill_prefect")
    try:
        with tempfile.TemporaryDirectory() as folder, fresh_database("postgresql") as url:
            work = Path(folder)
            procs = Processes(work)
            key, buildings = prepare_linli(url)
            prefect_port = free_port()
            env = governance_env(url, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{prefect_db}", work,
                                 prefect_port, LINLI_LOOP__STUCK_MINUTES=str(args.stuck_minutes),
                                 LINLI_LOOP__SLA_INTERVAL_SECONDS=str(args.sla_seconds))
            gov = Governance(procs, env, prefect_port, free_port(), key, buildings)
            reports = ReportFiler(gov, args.report_every)

            try:
                gov.start()
                started = {name: p.pid for name, p in procs.running.items() if name != "prefect-server"}
                say(f"filing a report every {args.report_every:g} s for {args.seconds:.0f} s")
                begin = time.perf_counter()
                reports.start()
                time.sleep(args.restart_at)
                procs.stop("prefect-server")
                down_from = time.time()
                say(f"Prefect server stopped (filed so far {len(reports.filed)})")
                time.sleep(args.down_seconds)
                took = gov.start_prefect()
                back_at = time.time()
                say(f"Prefect server back ({took:.0f} s to start; away {back_at - down_from:.0f} s)")
                time.sleep(max(0.0, args.seconds - (time.perf_counter() - begin)))
                reports.stop()
                numbers = reports.numbers
                say(f"filed {len(numbers)}; waiting for every case to be dispatched")
                statuses, waited = wait_cases(url, numbers, 300 + args.stuck_minutes * 60)
                recover = time.time() - back_at
                sla_after = sla_runs_since(gov.prefect_api, datetime.fromtimestamp(back_at, UTC))
                same = {name: procs.running[name].pid == pid and procs.running[name].poll() is None
                        for name, pid in started.items()}
                statuses = case_statuses(url, numbers)
            finally:
                reports.stop()
                procs.stop_all()
    finally:
        drop_pg_database(prefect_db)
    stuck = sorted(n for n in numbers if statuses.get(n) not in LATER)
    during = [n for n, at in reports.filed if down_from <= at <= back_at]
    ok = not stuck and sla_after > 0 and all(same.values())
    print(f"cases filed {len(numbers)} ({len(during)} while the server was away); dispatched or later "
          f"{len(numbers) - len(stuck)}; stuck {len(stuck)} {stuck[:5]}; API calls refused {reports.refused}")
    print(f"every case dispatched {recover:.0f} s after the server came back; SLA watch runs completed since: "
          f"{sla_after}; worker and API never restarted: {same}")
    print("PASS" if ok else "FAIL")
    last_line({"drill": "prefect_restart", "cases_filed": len(numbers), "filed_while_down": len(during),
               "cases_dispatched": len(numbers) - len(stuck), "cases_stuck": len(stuck), "api_refused": reports.refused,
               "server_down_s": round(back_at - down_from, 1), "time_to_recover_s": round(recover, 1),
               "sla_watch_runs_after_restart": sla_after, "stuck_minutes": args.stuck_minutes,
               "waited_s": round(waited, 1), "pass": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
