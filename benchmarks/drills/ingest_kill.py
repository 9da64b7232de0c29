"""Drill: an ingest replica killed with SIGKILL mid-stream → every message stored exactly once.

Two `linli ingest` processes share `$share/linli-ingest/linli/+/+/+/+` on a test Mosquitto
(`max_queued_messages 0`); `mosquitto_pub` processes (benchmarks.common.PubLoad) send telemetry
(QoS 1, each with a unique message id) at --rate messages a second for --seconds. At --kill-at s one
replica gets SIGKILL; it is started again (same client id: its persistent session) --restart-after s
later. At the end the rows are counted by message id: missing = 0 and duplicates = 0 is a pass, with
every publisher exiting 0 (the broker acknowledged all it sent).

    .venv/bin/python -m benchmarks.drills.ingest_kill [--rate 5000] [--seconds 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import PubLoad, fleet, fresh_database
from benchmarks.drills.common import (
    Processes,
    counters,
    ingest_env,
    last_line,
    say,
    start_replica,
    tally,
    wait_stored,
)
from tests.mqtt_broker import free_port, run_broker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000, help="messages a second")
    parser.add_argument("--seconds", type=float, default=40, help="how long the publisher runs")
    parser.add_argument("--kill-at", type=float, default=12, help="seconds into the stream")
    parser.add_argument("--restart-after", type=float, default=5, help="seconds the killed replica stays down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, run_broker(Path(folder)) as broker, \
            fresh_database("postgresql") as url:
        procs = Processes(Path(folder))
        try:
            devices = fleet(url, buildings=8, per_type=2)
            env = ingest_env(url, broker.port)
            ports = {"a": free_port(), "b": free_port()}
            for name, port in ports.items():
                start_replica(procs, name, env, port)
            say(f"two replicas up; publishing {args.rate:,.0f} msg/s for {args.seconds:.0f} s")
            stream = PubLoad(broker.host, broker.port, devices, args.rate).start(args.seconds)
            time.sleep(args.kill_at)
            before = counters(ports["a"])
            procs.kill("a")
            killed_at = time.perf_counter()
            say(f"SIGKILL replica a (it had written {before.get('written')}); published so far "
                f"{len(stream.published)}")
            time.sleep(args.restart_after)
            start_replica(procs, "a", env, ports["a"])
            down = time.perf_counter() - killed_at  # the wait, plus the replica's start until it answers
            say(f"replica a back after {down:.1f} s")
            stream.join()
            codes = stream.stop()  # each mosquitto_pub exits 0 once the broker acknowledged all it sent
            say(f"published {len(stream.published)} in {stream.seconds:.1f} s (publishers' exit codes {codes}); "
                "waiting for the rows")
            waited = wait_stored(stream.published, url, 180)
            time.sleep(2)  # anything still arriving would be a duplicate: give it the chance
            figures = tally(stream.published, url)
            replicas = {name: counters(port) for name, port in ports.items()}
        finally:
            procs.stop_all()
        if figures["missing"]:
            print(procs.log("a")[-3000:])
    ok = figures["missing"] == 0 and figures["duplicates"] == 0 and not any(codes)
    print(f"published {figures['published']} at {stream.achieved_rate:,.0f} msg/s (asked {args.rate:,.0f}); "
          f"stored {figures['stored']}, missing {figures['missing']}, duplicates {figures['duplicates']}; "
          f"all stored {waited:.1f} s after the publisher stopped")
    for name, c in replicas.items():
        print(f"replica {name} after restart: written {c.get('written')}, duplicates ignored {c.get('duplicates')}, "
              f"dead letters {c.get('dead_lettered')}")
    print("PASS" if ok else "FAIL")
    last_line({"drill": "ingest_kill", **figures, "asked_rate": args.rate,
               "achieved_rate": round(stream.achieved_rate), "kill_at_s": args.kill_at,
               "down_s": round(down, 1), "catch_up_s": round(waited, 1),
               "redelivered_ignored": sum(int(c.get("duplicates") or 0) for c in replicas.values()),
               "publisher_exit_codes": codes, "pass": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
