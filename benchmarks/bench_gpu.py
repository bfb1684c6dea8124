"""The GPU benchmark: what 2 CPU cores could not measure, in one command on a machine with a CUDA GPU.

Steps (each a subprocess running the project's own CLI or benchmark script; its JSON is kept):

1. ``teacher_224``: ``sdr-tosc cache --finetune-teacher E --input-size 224 --device cuda``: the default
   teacher (EfficientNet-Lite0, ImageNet weights) fine-tuned to the data set at 224 px, then cached with R
   replays. Times both; reports the teacher's test accuracy and the cache's bytes and build seconds per sample.
2. ``distill_speed``: ``bench_distill_speed.py --device cuda`` with that cache and teacher: seconds per
   distillation epoch with the cache vs with the teacher run online (both on the GPU), for the 224-px default
   teacher and for a ViT-base-sized ``transformers`` teacher (its cache built on the GPU over
   ``--vit-cache-samples`` images). Target: >= 50x with the default teacher at 224 px.
3. ``data_fraction``: ``bench_data_fraction.py --device cuda --cache <the 224-px cache>``: KD vs labels only
   at 10 % (and 5 %) of the labels. Target: KD >= +5 points at 10 % with this stronger teacher.

``--tiny`` runs the same steps at toy sizes on the CPU (first 512 images, 32 px, one epoch, a few batches):
a plumbing check that the recipe still runs, not a measurement. Prints one JSON object (also written to
``--json``); every step's command, seconds, return code and JSON are in it, so a failed step is visible and
the others still run.

Usage (on the GPU machine, after ./run.sh test or scripts/setup.sh)::

    .venv/bin/python benchmarks/bench_gpu.py --json gpu.json                 # full: ~10 min on one H200
    .venv/bin/python benchmarks/bench_gpu.py --tiny --device cpu             # plumbing check, ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("sdr-tosc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sdr_tosc.cli"]


def run_step(name: str, cmd: list[str], json_path: Path | None, timeout: float, env: dict[str, str]) -> dict:
    """Run one step; its JSON (from ``json_path`` or stdout) with the command, seconds and return code."""
    print(f"[bench_gpu] {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", exc.stdout or "", exc.stderr or ""
        out, err = (x.decode() if isinstance(x, bytes) else x for x in (out, err))
    step: dict = {"command": cmd, "seconds": round(time.perf_counter() - t0, 1), "returncode": rc}
    result = None
    try:
        if json_path is not None and json_path.exists():
            result = json.loads(json_path.read_text())
        elif out.strip():
            result = json.loads(out[out.index("{"):])
    except (ValueError, OSError) as exc:
        step["json_error"] = str(exc)
    step["result"] = result
    if rc != 0:
        step["stderr_tail"] = err[-3000:]
    print(f"[bench_gpu] {name}: rc={rc} in {step['seconds']} s", file=sys.stderr, flush=True)
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, cpu (with --tiny), auto")
    p.add_argument("--tiny", action="store_true", help="toy sizes: a plumbing check, not a measurement")
    p.add_argument("--work", type=Path, default=None, help="folder for the teacher and cache (default: a temp dir)")
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--replays", type=int, default=4)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256, help="teacher fine-tuning and caching batch")
    p.add_argument("--vit-cache-samples", type=int, default=4096)
    p.add_argument("--fractions", default="0.05,0.1")
    p.add_argument("--epochs", type=int, default=5, help="data-fraction runs: epochs x --steps optimizer steps")
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--step-timeout", type=float, default=3600, help="seconds before a step is stopped")
    p.add_argument("--only", default=None, help="comma list of steps to run (teacher_224,distill_speed,data_fraction)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    import torch  # noqa: PLC0415

    from sdr_tosc.semantic.runtime import resolve_device  # noqa: PLC0415

    dev = resolve_device(a.device)
    if dev.type != "cuda" and not a.tiny:
        print("bench_gpu: no CUDA device here; this benchmark measures a GPU (use --tiny --device cpu for a "
              "plumbing check)", file=sys.stderr)
        return 2
    limit = []
    if a.tiny:  # toy sizes
        a.finetune_epochs, a.replays, a.input_size, a.batch_size = 1, 1, 32, 64
        a.vit_cache_samples, a.fractions, a.epochs, a.steps = 16, "0.1", 1, 4
        limit = ["--limit", "512"]
    only = set(a.only.split(",")) if a.only else None
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-gpu-")
        a.work = Path(tmp.name)
    a.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    teacher = a.work / f"teacher-effnetlite0-{a.input_size}px.safetensors"
    cache = a.work / f"cache-effnetlite0-{a.input_size}px"
    out: dict = {
        "benchmark": "gpu",
        "tiny": a.tiny,
        "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "host": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "steps": {},
    }
    t_all = time.perf_counter()

    def want(name: str) -> bool:
        return only is None or name in only

    if want("teacher_224"):
        js = a.work / "cache.json"
        js.unlink(missing_ok=True)
        cmd = [*cli(), "cache", "--finetune-teacher", str(a.finetune_epochs), "--input-size", str(a.input_size),
               "--replays", str(a.replays), "--batch-size", str(a.batch_size), "--device", str(dev),
               "--teacher-out", str(teacher), "--out", str(cache), "--no-progress", "--json", str(js), *limit]
        if a.tiny:
            cmd += ["--chunk-size", "256", "--pca-samples", "256"]
        out["steps"]["teacher_224"] = run_step("teacher_224", cmd, js, a.step_timeout, env)
    if want("distill_speed"):
        js = a.work / "distill.json"
        js.unlink(missing_ok=True)
        cmd = [sys.executable, str(BENCH / "bench_distill_speed.py"), "--device", str(dev), "--cache", str(cache),
               "--teacher", str(teacher), "--vit-cache-samples", str(a.vit_cache_samples), "--json", str(js)]
        cmd += (["--batches", "2", "--warmup", "1", "--vit-batches", "1", "--batch-size", "32"] if a.tiny
                else ["--batches", "50", "--warmup", "5", "--vit-batches", "20"])
        out["steps"]["distill_speed"] = run_step("distill_speed", cmd, js, a.step_timeout, env)
    if want("data_fraction"):
        cmd = [sys.executable, str(BENCH / "bench_data_fraction.py"), "--device", str(dev), "--cache", str(cache),
               "--fractions", a.fractions, "--epochs", str(a.epochs), "--steps", str(a.steps),
               "--jobs", "1" if a.tiny else "2", "--threads", "1" if a.tiny else "4"]
        if a.tiny:
            cmd += ["--limit", "200"]
        out["steps"]["data_fraction"] = run_step("data_fraction", cmd, None, a.step_timeout, env)
    out["summary"] = summarise(out["steps"])
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        from sdr_tosc.fileio import atomic_path  # noqa: PLC0415

        with atomic_path(a.json) as tmp_json:
            Path(tmp_json).write_text(text + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(s["returncode"] == 0 for s in out["steps"].values()) else 1


def summarise(steps: dict) -> dict:
    """The figures the issue asks for, pulled out of the steps' JSON (None where a step failed)."""
    s: dict = {}
    t = (steps.get("teacher_224") or {}).get("result") or {}
    if t:
        s["teacher_test_acc"] = (t.get("teacher") or {}).get("test_acc")
        s["cache_build_seconds_per_sample"] = t.get("build_seconds_per_sample")
        s["cache_bytes_per_sample_per_replay"] = t.get("bytes_per_sample_per_replay")
        s["teacher_and_cache_seconds"] = steps["teacher_224"]["seconds"]
    d = (steps.get("distill_speed") or {}).get("result") or {}
    if d:
        s["distill_speedup_default_teacher"] = (d.get("default_teacher") or {}).get("speedup")
        s["distill_speedup_vit_base"] = (d.get("vit_base") or {}).get("speedup")
        s["vit_base_cache_build_seconds_per_sample"] = (d.get("vit_base") or {}).get("cache_build_seconds_per_sample")
        s["target_distill_speedup_50x_met"] = (s["distill_speedup_default_teacher"] or 0) >= 50
    f = (steps.get("data_fraction") or {}).get("result") or {}
    if f:
        gains = {str(r["label_fraction"]): r["kd_gain_points"] for r in f.get("runs", [])}
        s["kd_gain_points"] = gains
        if "0.1" in gains:
            s["target_kd_gain_10pct_5pt_met"] = gains["0.1"] >= 5.0
    return s


if __name__ == "__main__":
    raise SystemExit(main())
