"""`make bench`: every measurement in bench/, printed, nothing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script, args in (("tick_throughput.py", []), ("idle_cpu.py", ["--seconds", "20"])):
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=False)
