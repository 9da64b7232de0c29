"""Drill: the data-hub receiver down for 2 minutes while access records are written → every record delivered
exactly once afterwards.

Access and vehicle records are written as ingest writes them (`BatchWriter`, which puts each
record's outbox row in the same transaction) at --rate records a second for the whole drill. The
data-hub push runs as the `datahub-push` DAG does on its schedule: every --push-interval s,
`push_until_caught_up` for up to 50 s, with a default endpoint (backoff from 2 s doubling to 60 s,
parked after 8 failed attempts). After --before s the receiver goes away — its port closed,
connections refused — for --outage-seconds, then comes back on the same port. At the end the
receiver's log is counted by idempotency key: every outbox record exactly once, none parked.

    .venv/bin/python -m benchmarks.drills.datahub_outage [--outage-seconds 120]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

from benchmarks.common import fleet, fresh_database
from benchmarks.drills.common import last_line, say
from linli import db
from linli.datahub import EndpointConfig, push_until_caught_up
from linli.devices.simulator import Generator
from linli.devices.writer import BatchWriter, Incoming
from linli.models import OutboxRecord, ParkedRecord
from linli.receiver import Message, NotificationReceiver
from tests.mqtt_broker import free_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-seconds", type=float, default=120)
    parser.add_argument("--before", type=float, default=20, help="seconds of normal pushing before the outage")
    parser.add_argument("--after", type=float, default=30, help="seconds records are still written after it")
    parser.add_argument("--rate", type=float, default=100, help="access/vehicle records written a second")
    parser.add_argument("--push-interval", type=float, default=60, help="the datahub-push schedule (s)")
    args = parser.parse_args()
    received: Counter[str] = Counter()
    requests = {"ok": 0}
    lock = threading.Lock()

    def count(message: Message) -> None:
        data = message.get("json") or {}
        with lock:
            requests["ok"] += 1
            received.update(r["idempotency_key"] for r in data.get("records", []))

    port = free_port()
    endpoint = EndpointConfig(name="drill-hub", url=f"http://127.0.0.1:{port}/hub")
    with fresh_database("postgresql") as url:
        engine = db.engine_for(url)
        devices = [d for d in fleet(url, buildings=8) if d.device_type in ("access_gate", "vehicle_barrier")]
        writer = BatchWriter(engine)
        stop_writing, stop_pushing = threading.Event(), threading.Event()
        pushes: list[dict[str, int]] = []

        def write() -> None:
            generator = Generator(devices)
            i = 0
            while not stop_writing.is_set():
                chunk = []
                while len(chunk) < max(1, int(args.rate / 2)):
                    name, payload = generator.uplink(devices[i % len(devices)])
                    i += 1
                    if name.endswith("/event"):
                        chunk.append(Incoming(name, payload))
                writer.write(chunk)
                stop_writing.wait(0.5)

        def push() -> None:  # what the scheduled datahub-push flow does, run after run
            with httpx.Client() as client:
                while not stop_pushing.is_set():
                    results = push_until_caught_up(engine, endpoint, client=client, deadline_seconds=50)
                    pushes.append({"sent": sum(r.sent for r in results), "failed": sum(1 for r in results if r.failed),
                                   "parked": sum(r.parked for r in results),
                                   "caught_up": int(bool(results and results[-1].caught_up))})
                    stop_pushing.wait(args.push_interval)

        receiver = NotificationReceiver(port=port, on_message=count).start()
        writer_thread = threading.Thread(target=write, daemon=True)
        pusher = threading.Thread(target=push, daemon=True)
        writer_thread.start()
        pusher.start()
        say(f"writing {args.rate:g} records/s; pushing every {args.push_interval:g} s to {endpoint.url}")
        time.sleep(args.before)
        receiver.close()
        down_at = time.perf_counter()
        say(f"receiver down (received so far {sum(received.values())}) for {args.outage_seconds:g} s")
        time.sleep(args.outage_seconds)
        receiver = NotificationReceiver(port=port, on_message=count).start()
        up_at = time.perf_counter()
        say("receiver back on the same port")
        time.sleep(args.after)
        stop_writing.set()
        writer_thread.join(30)
        with Session(engine) as session:
            total = session.execute(select(func.count()).select_from(OutboxRecord)).scalar_one()
            keys = set(session.execute(select(OutboxRecord.idempotency_key)).scalars())
        say(f"{total} records written; waiting until all are delivered")
        deadline = time.perf_counter() + 180 + args.push_interval
        while time.perf_counter() < deadline:
            with lock:
                if keys <= set(received):
                    break
            time.sleep(1)
        delivered_at = time.perf_counter()
        stop_pushing.set()
        pusher.join(120)
        receiver.close()
        with Session(engine) as session:
            parked = session.execute(select(func.count()).select_from(ParkedRecord)).scalar_one()
    with lock:
        missing = len(keys - set(received))
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        unknown = len(set(received) - keys)
    failed = sum(p["failed"] for p in pushes)
    ok = missing == 0 and duplicates == 0 and unknown == 0 and parked == 0
    print(f"records {total}; delivered {len(set(received) & keys)}, missing {missing}, duplicates {duplicates}, "
          f"parked {parked}; {failed} failed attempts during the {args.outage_seconds:g} s outage")
    print(f"all delivered {delivered_at - up_at:.0f} s after the receiver came back "
          f"({delivered_at - down_at:.0f} s after it went down)")
    print("PASS" if ok else "FAIL")
    last_line({"drill": "datahub_outage", "records": total, "delivered": len(set(received) & keys),
               "missing": missing, "duplicates": duplicates, "parked": parked, "failed_attempts": failed,
               "outage_s": args.outage_seconds, "caught_up_s_after_back": round(delivered_at - up_at, 1),
               "push_interval_s": args.push_interval, "pass": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
