"""Simulator scale: simulated events per wall second and memory per simulated peer.

    python bench/simulation.py [--quick] [--huge]

Each measurement runs one scenario seed (``colonymesh.simulations.runner.
run_scenario``) in a fresh Python process, so its peak RSS is that run's
alone: ``dht`` (the real Kademlia core, 20% churn), ``gossip`` (the real
router, 5% loss) and ``colony`` (Raft servers, ledger, executors) at a few
sizes. Memory per peer = (peak RSS of the run - peak RSS of a process that
imported the same modules and ran nothing) / peers.

On a shared machine the wall clock lies: events per CPU second (user +
system time of the run's process) are reported next to events per wall second.

Baseline, same run: the smallest size of each scenario; the ratio is that
scenario's events per wall second at its largest size over its smallest
(1.0 = the simulator keeps its speed as the population grows).
``--huge`` adds the 100,000-peer dht run (several minutes, a few GB).

Last stdout line: one JSON object with the figures, ``baseline`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

_CHILD = """
import json, resource, sys, time
from colonymesh.simulations.runner import run_scenario
name, peers, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
duration = None if duration == "-" else float(duration)
if peers == 0:
    from colonymesh.simulations import runner
    runner._load_builtin()
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    raise SystemExit
started = time.perf_counter()
s = run_scenario(name, peers, 1, duration, report_to=None)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "wall_s": round(wall, 2),
    "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    "events": s.get("events"),
    "violations": s["violations"],
    "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "extra": {k: s[k] for k in ("lookup_success_rate", "lookup_hops", "bootstrap",
        "time_to_99_s", "reached_every_live_peer", "processes_succeeded", "processes_submitted",
        "completion_latency_s") if k in s},
}))
"""


def measure(name: str, peers: int, duration: float | None) -> dict[str, Any]:
    arg = "-" if duration is None else str(duration)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, name, str(peers), arg],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} at {peers} peers failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--huge", action="store_true", help="add dht at 100,000 peers")
    args = parser.parse_args()
    plan: dict[str, list[tuple[int, float | None]]] = {
        "dht": [(1000, None), (10_000, None)],
        "gossip": [(100, None), (1000, None)],
        "colony": [(50, 40.0), (1000, 40.0), (10_000, 600.0)],
    }
    if args.quick:
        plan = {
            "dht": [(200, 30.0), (3000, 30.0)],
            "gossip": [(100, 10.0), (500, 10.0)],
            "colony": [(20, 20.0), (100, 20.0)],
        }
    if args.huge:
        plan["dht"].append((100_000, None))
    idle = measure("dht", 0, None)["rss_mb"]
    print(f"idle process (modules imported): {idle:.0f} MB peak RSS")
    figures: dict[str, Any] = {"idle_rss_mb": idle}
    ratios: dict[str, float] = {}
    for name, sizes in plan.items():
        rates = []
        for peers, duration in sizes:
            r = measure(name, peers, duration)
            rate = r["events"] / r["wall_s"] if r["wall_s"] > 0 else 0.0
            cpu_rate = r["events"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0
            per_peer_kb = max(0.0, r["rss_mb"] - idle) * 1024 / peers
            rates.append(rate)
            figures[f"{name}_{peers}"] = {
                "wall_s": r["wall_s"],
                "events": r["events"],
                "events_per_s": round(rate),
                "cpu_s": r["cpu_s"],
                "events_per_cpu_s": round(cpu_rate),
                "rss_mb": r["rss_mb"],
                "kb_per_peer": round(per_peer_kb, 1),
                "violations": r["violations"],
                **r["extra"],
            }
            print(
                f"{name:7s} {peers:>7,d} peers: {r['wall_s']:8.1f} s wall, "
                f"{r['events']:>11,d} events, {rate:>8,.0f} events/s "
                f"({cpu_rate:,.0f} per CPU s), "
                f"{r['rss_mb']:7.0f} MB RSS, {per_peer_kb:6.1f} kB/peer, "
                f"{r['violations']} violation(s)",
                flush=True,
            )
        ratios[name] = round(rates[-1] / rates[0], 3) if rates[0] else 0.0
    figures["baseline"] = "each scenario's smallest size (events per wall second)"
    figures["ratio"] = ratios
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
