"""Surrogate data drift: re-simulate records of a shipped data file with the installed twin and compare.

After a change to the twin, says how far the shipped training data are from what the twin now gives:
records where the client ran out of ports and records where it never did, each sampled evenly over the
file's records sorted by the wall time they took (fastest first). Usage:

    python benchmarks/surrogate_data_drift.py surrogate/data/llama-3.1-8b-instruct_h100-64gb.jsonl.gz --per-kind 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from loraplace.surrogate.design import design
from loraplace.surrogate.generate import header_client, point_seed, read_data, sample_record, twin_version
from loraplace.twin.profile import load_profile


def resimulate(args: tuple) -> dict:
    head, rec = args
    profile = load_profile(head["profile"])
    point = design(profile, head["samples"], head["seed"])[rec["index"]]
    return sample_record((rec["index"], profile, point, head["window_s"], head["starvation_threshold"],
                          point_seed(head["seed"], rec["index"]), header_client(head)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--per-kind", type=int, default=12, help="records re-simulated of each kind (dropped arrivals or not)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    head, records = read_data(args.data)
    served = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["wall_s"])
    out = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
           "data": str(args.data), "data_twin_version": head["twin_version"], "twin_version": twin_version(),
           "records": len(records), "served": len(served), "kinds": {}}
    for kind, pool in (("client_ran_out_of_ports", [r for r in served if r["dropped"]]),
                       ("client_never_ran_out", [r for r in served if not r["dropped"]])):
        sample = pool[:: max(1, len(pool) // args.per_kind)][: args.per_kind]
        with ProcessPoolExecutor(args.workers) as ex:
            again = list(ex.map(resimulate, [(head, r) for r in sample]))
        rows = []
        for rec, new in zip(sample, again):
            fields = [k for k in rec if k != "wall_s" and rec[k] != new[k]]
            thr = abs(new["throughput_tok_s"] / rec["throughput_tok_s"] - 1) * 100 if rec["throughput_tok_s"] else 0.0
            ttft = abs(new["mean_ttft_ms"] / rec["mean_ttft_ms"] - 1) * 100 if rec["mean_ttft_ms"] else 0.0
            rows.append({"index": rec["index"], "fields_changed": fields, "throughput_change_pct": round(thr, 4),
                         "ttft_change_pct": round(ttft, 4), "starved_same": rec["starved"] == new["starved"]})
            print(f"{kind} {rec['index']}: {thr:.3f} % throughput, {len(fields)} fields changed", file=sys.stderr)
        changes = [r["throughput_change_pct"] for r in rows]
        out["kinds"][kind] = {"in_file": len(pool), "resimulated": len(rows),
                              "identical": sum(not r["fields_changed"] for r in rows),
                              "starved_flag_same": sum(r["starved_same"] for r in rows),
                              "throughput_change_pct_median": round(statistics.median(changes), 4) if changes else None,
                              "throughput_change_pct_max": max(changes, default=None),
                              "ttft_change_pct_max": max((r["ttft_change_pct"] for r in rows), default=None), "rows": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "kinds"} | {k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                                                                      for k, v in out["kinds"].items()}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
