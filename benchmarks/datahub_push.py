"""Data-hub push throughput: outbox → field policy → template → HTTP, to a local receiver, and through an outage.

Baseline in the same run: the same records, already rendered, POSTed in the same batch size by a
plain httpx client (no database, no policy, no template) to the same receiver.
Goal (DESIGN.md): ≥ 5,000 records/s, nothing lost while the receiver is down.

    .venv/bin/python -m benchmarks.datahub_push [--records 50000] [--outage 3]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import httpx

from benchmarks.common import fleet, fresh_database, last_line
from linli import db
from linli.datahub import EndpointConfig, push_until_caught_up
from linli.devices.simulator import Generator
from linli.devices.writer import BatchWriter, Incoming
from linli.receiver import Message, NotificationReceiver


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the receiver answers 503")
    parser.add_argument("--database", default="auto")
    args = parser.parse_args()
    accepted: dict[str, set[str]] = {"fast": set(), "outage": set()}
    lock = threading.Lock()

    with fresh_database(args.database) as url, NotificationReceiver() as receiver:
        def count(message: Message) -> None:
            data = message.get("json") or {}
            if receiver.status_code == 200 and data.get("endpoint") in accepted:
                with lock:
                    accepted[data["endpoint"]].update(r["idempotency_key"] for r in data["records"])

        receiver.on_message = count
        engine = db.engine_for(url)
        devices = [d for d in fleet(url) if d.device_type in ("access_gate", "vehicle_barrier")]
        generator = Generator(devices)
        writer = BatchWriter(engine)
        made = 0
        while made < args.records:
            chunk = []
            while len(chunk) < 5000 and made < args.records:
                device = devices[made % len(devices)]
                name, payload = generator.uplink(device)
                if name.endswith("/event"):
                    chunk.append(Incoming(name, payload))
                    made += 1
            writer.write(chunk)

        # Baseline: pre-rendered bodies straight to the receiver.
        with engine.connect() as conn:
            from sqlalchemy import text

            rows = conn.execute(text("SELECT payload, idempotency_key FROM datahub_outbox ORDER BY id")).all()
        bodies = []
        for start in range(0, len(rows), args.batch_size):
            records = [{**(r[0] if isinstance(r[0], dict) else json.loads(r[0])), "idempotency_key": r[1]}
                       for r in rows[start:start + args.batch_size]]
            bodies.append(json.dumps({"endpoint": "baseline", "records": records}, ensure_ascii=False).encode())
        with httpx.Client() as client:
            started = time.perf_counter()
            for body in bodies:
                client.post(f"{receiver.url}/hub", content=body, headers={"Content-Type": "application/json"})
            baseline_seconds = time.perf_counter() - started

            fast = EndpointConfig(name="fast", url=f"{receiver.url}/hub", batch_size=args.batch_size)
            started = time.perf_counter()
            push_until_caught_up(engine, fast, client=client, deadline_seconds=600)
            push_seconds = time.perf_counter() - started

            outage = EndpointConfig(name="outage", url=f"{receiver.url}/hub", batch_size=args.batch_size,
                                    backoff_seconds=0.25, max_attempts=50)
            receiver.status_code = 503
            threading.Timer(args.outage, lambda: setattr(receiver, "status_code", 200)).start()
            started = time.perf_counter()
            results = push_until_caught_up(engine, outage, client=client, deadline_seconds=600)
            outage_seconds = time.perf_counter() - started
        failures = sum(1 for r in results if r.failed)
        total = len(rows)

    push_rate = total / push_seconds
    baseline_rate = total / baseline_seconds
    lost_fast, lost_outage = total - len(accepted["fast"]), total - len(accepted["outage"])
    print(f"{total} access/vehicle records in the outbox ({engine.dialect.name}), batches of {args.batch_size}")
    print(f"plain POST of pre-rendered batches: {baseline_rate:,.0f} records/s")
    print(f"data-hub push (cursor, policy, template, HTTP): {push_rate:,.0f} records/s; "
          f"ratio {push_rate / baseline_rate:.2f}")
    print(f"through a {args.outage:.0f} s outage: {total / outage_seconds:,.0f} records/s overall, {failures} failed "
          f"attempts, lost {lost_outage}")
    last_line({"benchmark": "datahub_push", "records": total, "push_records_per_s": round(push_rate),
               "baseline_records_per_s": round(baseline_rate), "ratio": round(push_rate / baseline_rate, 3),
               "outage_seconds": args.outage, "outage_records_per_s": round(total / outage_seconds),
               "failed_attempts": failures, "lost": lost_fast + lost_outage, "goal_records_per_s": 5000})


if __name__ == "__main__":
    main()
