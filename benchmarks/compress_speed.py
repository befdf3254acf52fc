"""Times `kcc.rewrite.compress` on ResNet-18 width 64 (all SVDs, rank selection, rebuild).

    KERAS_BACKEND=tensorflow python benchmarks/compress_speed.py

Writes benchmarks/results/compress_speed.{json,md}. Each cr runs `--repeats` times on a fresh
process-warm model; the minimum and median are reported (the machine is shared and noisy).
"""

import os
import platform
import time

from absl import app
from absl import flags

import keras
from kcc import models
from kcc import rewrite
from kcc import saving

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per compression ratio.")
_NOTE = flags.DEFINE_string("note", "", "Conditions of the run, written into the results.")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "compress_speed")


def main(argv):
    del argv
    model = models.resnet18(width=64)
    rows = []
    for cr in (2, 3, 4):
        times = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            _, report = rewrite.compress(model, cr=cr)
            times.append(time.perf_counter() - start)
        times.sort()
        rows.append({"cr": cr, "params_after": report.params_after, "ratio": round(report.ratio, 4),
                     "seconds_min": round(times[0], 2), "seconds_median": round(times[len(times) // 2], 2)})
        print(rows[-1])
    result = {"backend": keras.backend.backend(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "model": "resnet18 width 64 (11,173,962 parameters)", "rows": rows,
              "command": "KERAS_BACKEND=tensorflow python benchmarks/compress_speed.py", "note": _NOTE.value}
    saving.write_json(result, OUT + ".json")
    lines = ["# compress() time, ResNet-18 width 64", "", f"`{result['command']}` on {result['machine']}, "
             f"backend {result['backend']}. {_NOTE.value}", "", "| cr | parameters after | ratio | min s | median s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['cr']} | {r['params_after']:,} | {r['ratio']} | {r['seconds_min']} | {r['seconds_median']} |"
              for r in rows]
    saving.write_text("\n".join(lines) + "\n", OUT + ".md")


if __name__ == "__main__":
    app.run(main)
