"""The wheel installs only the loraplace namespace and carries the shipped data files."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_layout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path)], check=True, timeout=600)
    wheel = next(tmp_path.glob("loraplace-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"loraplace"}
    for module in ("loraplace/cli.py", "loraplace/harness/probe.py", "loraplace/twin/engine.py", "loraplace/twin/scheduler.py",
                   "loraplace/surrogate/model.py", "loraplace/solvers/benders.py"):
        assert module in names
    assert "loraplace/instances/paper-64-r8-16-high.json" in names
    # the twin's compiled step loop (this machine has a C compiler; without one the build skips it)
    assert any(n.startswith("loraplace/twin/_core.") and n.endswith((".so", ".pyd")) for n in names)
    for profile in ("llama-3.1-8b-instruct_h100-64gb", "qwen-2.5-7b-instruct_h100-64gb"):
        assert f"loraplace/twin/profiles/{profile}.json" in names
        for part in ("metadata.json", "ratio.cbm", "starved.cbm", "log_itl_ms.cbm", "log_ttft_ms.cbm"):
            assert f"loraplace/surrogate/models/{profile}/{part}" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "loraplace = loraplace.cli:main" in entry
    assert "loraplace_probe = loraplace.harness.probe:register" in entry  # the vLLM plugin, inert by default
