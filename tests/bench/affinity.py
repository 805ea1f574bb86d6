"""``python -m tests.bench.affinity``: prints the CPUs it may run on, as JSON."""

import json
import os

if __name__ == "__main__":
    print(json.dumps({"cpus": sorted(os.sched_getaffinity(0))}))
