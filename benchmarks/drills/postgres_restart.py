"""Drill: PostgreSQL restarted mid-stream → ingest and the governance flows reconnect by themselves, nothing lost.

Everything runs on a PostgreSQL of the drill's own (initdb into a temp folder, a free port — the
system PostgreSQL is never touched): Linli's database and the Prefect server's. Two `linli ingest`
replicas consume a stream (QoS 1, unique message ids, from `mosquitto_pub` processes:
benchmarks.common.PubLoad) from a test Mosquitto; the Prefect server,
`python -m flows.serve` (the loop's deployments) and `linli api` run the governance loop while a
report is filed through the Open311 API every --report-every s. At --restart-at s:
`pg_ctl restart -m fast`. No Linli process is restarted. At the end: every MQTT message stored once,
every filed report dispatched (or later), every Linli process still the one that was started.

    .venv/bin/python -m benchmarks.drills.postgres_restart [--rate 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import PubLoad
from benchmarks.drills.common import (
    LATER,
    Governance,
    Processes,
    ReportFiler,
    counters,
    governance_env,
    ingest_env,
    last_line,
    prepare_linli,
    private_postgres,
    say,
    start_replica,
    tally,
    wait_cases,
    wait_stored,
)
from linli.devices.simulator import equip
from tests.mqtt_broker import free_port, run_broker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000, help="MQTT messages a second")
    parser.add_argument("--seconds", type=float, default=60, help="how long the stream runs")
    parser.add_argument("--restart-at", type=float, default=20, help="seconds into the stream")
    parser.add_argument("--report-every", type=float, default=2.0, help="seconds between two filed reports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, private_postgres() as pg, run_broker(Path(folder)) as broker:
        work = Path(folder)
        procs = Processes(work)
        url = pg.create_database("linli")
        prefect_url = pg.create_database("prefect").replace("+psycopg", "+asyncpg")
        key, buildings = prepare_linli(url)
        from linli import db

        with db.session_scope(db.engine_for(url)) as session:
            devices = equip(session, buildings=8, per_type=2)
        db.engine_for(url).dispose()
        prefect_port = free_port()
        gov = Governance(procs, governance_env(url, prefect_url, work, prefect_port), prefect_port, free_port(),
                         key, buildings)
        reports = ReportFiler(gov, args.report_every)

        try:
            gov.start()
            ports = {"a": free_port(), "b": free_port()}
            env = ingest_env(url, broker.port)
            for name, port in ports.items():
                start_replica(procs, name, env, port)
            started = {name: p.pid for name, p in procs.running.items()}
            say(f"stack up on private PostgreSQL :{pg.port}; streaming {args.rate:,.0f} msg/s for "
                f"{args.seconds:.0f} s, a report every {args.report_every:g} s")
            stream = PubLoad(broker.host, broker.port, devices, args.rate).start(args.seconds)
            reports.start()
            time.sleep(args.restart_at)
            say(f"pg_ctl restart -m fast (published so far {len(stream.published)}, filed {len(reports.filed)})")
            written_before = sum(int(counters(p).get("written") or 0) for p in ports.values())
            restarted_at = time.perf_counter()
            restart_seconds = pg.restart()
            say(f"PostgreSQL back after {restart_seconds:.1f} s")
            resumed = None  # seconds from the restart to ingest writing again
            while resumed is None and time.perf_counter() - restarted_at < 120:
                if sum(int(counters(p).get("written") or 0) for p in ports.values()) > written_before:
                    resumed = time.perf_counter() - restarted_at
                time.sleep(0.1)
            say(f"ingest writing again {resumed} s after the restart began")
            stream.join()
            codes = stream.stop()  # each mosquitto_pub exits 0 once the broker acknowledged all it sent
            reports.stop()
            filed = reports.numbers
            say(f"published {len(stream.published)}, filed {len(filed)} reports; waiting for rows and cases")
            waited = wait_stored(stream.published, url, 240)
            time.sleep(2)
            figures = tally(stream.published, url)
            statuses, case_wait = wait_cases(url, filed, 300)
            replicas = {name: counters(port) for name, port in ports.items()}
            same = {name: procs.running[name].pid == pid and procs.running[name].poll() is None
                    for name, pid in started.items()}
        finally:
            reports.stop()
            procs.stop_all()
        stuck = sorted(n for n in filed if statuses.get(n) not in LATER)
    dispatched = len(filed) - len(stuck)
    ok = (resumed is not None and figures["missing"] == 0 and figures["duplicates"] == 0 and not stuck
          and all(same.values()) and not any(codes))
    print(f"MQTT: published {figures['published']} at {stream.achieved_rate:,.0f} msg/s; stored {figures['stored']}, "
          f"missing {figures['missing']}, duplicates {figures['duplicates']} (all stored {waited:.1f} s after the "
          f"stream ended)")
    for name, c in replicas.items():
        print(f"  replica {name}: written {c.get('written')}, batches retried {c.get('db_retries')}")
    print(f"reports: filed {len(filed)}, dispatched or later {dispatched}, stuck {len(stuck)} {stuck[:5]}; "
          f"API calls refused during the restart {reports.refused} (tried again by the client)")
    print(f"processes never restarted: {same}")
    print("PASS" if ok else "FAIL")
    last_line({"drill": "postgres_restart", **figures, "achieved_rate": round(stream.achieved_rate),
               "restart_at_s": args.restart_at, "pg_restart_s": round(restart_seconds, 1),
               "db_retries": sum(int(c.get("db_retries") or 0) for c in replicas.values()),
               "cases_filed": len(filed), "cases_dispatched": dispatched, "cases_stuck": len(stuck),
               "api_refused": reports.refused, "ingest_resumed_s": None if resumed is None else round(resumed, 1),
               "case_wait_s": round(case_wait, 1), "processes_restarted": sum(1 for v in same.values() if not v),
               "publisher_exit_codes": codes, "pass": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
