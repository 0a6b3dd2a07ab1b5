"""RELIABILITY.md part 4: kill -9 the demo host (``hermes-plugin demo`` in a subprocess) in the middle of writes.

Each trial starts the real CLI on one data directory, lets eight clients race guarded writes, and sends
SIGKILL once a random number of writes have completed (so the kill lands wherever the other seven are).
After every kill the session file must parse and every session must hold its old model or one a client
proposed for it. ``HERMES_RELIABILITY=1`` runs 200 trials, CI 20; ``bench/crash_safety.py`` prints the figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from support.processes import ServingCommand, console_script

from hermes_plugin.demo.app import SEED_SESSIONS
from hermes_plugin.demo.store import STORE_NAME

FULL = os.environ.get("HERMES_RELIABILITY") == "1"
TRIALS = 200 if FULL else 20
WRITERS = 8
MAX_WRITES_BEFORE_KILL = 40
INITIAL = {sid: model for sid, _, model, _ in SEED_SESSIONS}


@contextmanager
def demo_process(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``hermes-plugin demo --port 0`` on ``data_dir``; yields the process and its base URL once it serves."""
    with ServingCommand([console_script(), "demo", "--port", "0", "--latency", "0", "--data", str(data_dir)]) as demo:
        yield demo.proc, demo.url


@dataclass
class Trial:
    seed: int
    kill_after: int
    completed: int = 0
    proposed: dict[str, set[str]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    leftovers: int = 0  # temp files on disk after the kill (the store writes one at a time)


def one_trial(data_dir: Path, seed: int) -> Trial:
    """Race writes, SIGKILL the host after a random number of them, return what was proposed and completed."""
    rng = random.Random(seed)
    trial = Trial(seed, rng.randint(0, MAX_WRITES_BEFORE_KILL))
    done = threading.Condition()
    stop = threading.Event()
    with demo_process(data_dir) as (proc, url):

        def writer(n: int) -> None:
            http, wrng = requests.Session(), random.Random(seed * 1000 + n)
            i = 0
            while not stop.is_set():
                session = wrng.choice(list(INITIAL))
                model = f"crash/{seed}-{n}-{i}"
                route = wrng.choice(["/api/session/update", "/api/chat/start"])
                with done:
                    trial.proposed.setdefault(session, set()).add(model)
                try:
                    http.post(url + route, json={"session_id": session, "model": model, "message": "hi"},
                              headers={"X-Hermes-Intent": "user"}, timeout=30)
                except requests.RequestException:
                    return  # the host is gone
                with done:
                    trial.completed += 1
                    done.notify_all()
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        with done:
            done.wait_for(lambda: trial.completed >= trial.kill_after, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for thread in threads:
            thread.join()
    data = json.loads((data_dir / STORE_NAME).read_text(encoding="utf-8"))  # must parse after every kill
    trial.models = {sid: data[sid]["model"] for sid in INITIAL}
    trial.leftovers = len(list(data_dir.glob(".sessions-*.tmp")))
    return trial


def check(trial: Trial, before: dict[str, str]) -> None:
    """Each session holds the model it had before the trial or one proposed for it during the trial."""
    for sid, model in trial.models.items():
        assert model == before[sid] or model in trial.proposed.get(sid, set()), (trial.seed, sid, model)
    assert trial.leftovers <= 1  # the restart removed earlier crashes' temp files; at most the last one remains


def run_trials(data_dir: Path, trials: int, first_seed: int = 0) -> list[Trial]:
    before = dict(INITIAL)
    results = []
    for seed in range(first_seed, first_seed + trials):
        trial = one_trial(data_dir, seed)
        check(trial, before)
        before = trial.models
        results.append(trial)
    return results


def test_kill_9_mid_write_never_leaves_a_broken_session_file(tmp_path):
    results = run_trials(tmp_path, TRIALS)
    assert len(results) == TRIALS
    assert sum(t.completed for t in results) >= sum(t.kill_after for t in results)  # the writes really ran
    # After the last kill the host starts again on the same file and serves every session.
    with demo_process(tmp_path) as (_, url):
        sessions = requests.get(f"{url}/api/sessions", timeout=30).json()["sessions"]
    assert {s["session_id"] for s in sessions} >= set(INITIAL)
