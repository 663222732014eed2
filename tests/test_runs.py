"""The recipe scripts' clock (runs/clock.sh): a recipe's time summed over the runs that resume it."""

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.sh"
    path.write_text(f"set -euo pipefail\nsource {ROOT / 'runs/clock.sh'}\nclock_start {tmp_path / 'out'}\n{body}\n")
    return path


def test_a_resumed_recipe_adds_to_the_clock(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/recipe_clock").write_text("100\n")  # what the runs before counted
    out = subprocess.run(["bash", script(tmp_path, "sleep 1; stamp tokenizer")], capture_output=True, text=True,
                         check=True).stdout
    total = int((tmp_path / "out/recipe_clock").read_text())
    assert 101 <= total <= 110
    assert "tokenizer done after" in out and "the recipe's clock: 10" in out
    when, name, what, logged = (tmp_path / "out/recipe_clock.log").read_text().strip().split("\t")
    assert (name, what) == ("recipe.sh", "tokenizer") and 101 <= int(logged) <= total


def test_a_killed_recipe_keeps_what_it_counted_and_stops_counting(tmp_path):
    proc = subprocess.Popen(["bash", script(tmp_path, "sleep 60")], env={**os.environ, "CLOCK_EVERY": "1"},
                            start_new_session=True)
    t0 = time.monotonic()
    clock = tmp_path / "out/recipe_clock"
    while not clock.exists() and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)  # no trap runs: only the background writer's last count survives
    proc.wait()
    killed_after = time.monotonic() - t0
    time.sleep(2.5)  # the writer notices its script is gone within a period and writes no more
    counted = int(clock.read_text())
    assert 1 <= counted <= killed_after + 1
    time.sleep(2.5)
    assert int(clock.read_text()) == counted
    os.killpg(proc.pid, signal.SIGKILL)  # the script's orphaned sleep
