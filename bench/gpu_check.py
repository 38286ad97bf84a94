"""Everything that needs a CUDA device, in one run that fits in 8 minutes on one H100 or H200, builds included.

    make gpu-wheels   # where PyPI is reachable: gsplat 1.5.3 and what it may lack there, into .gpu-wheels/
    make gpu-check    # on the GPU machine, offline: python3 bench/gpu_check.py

Steps, in this order:
  environment        torch, its CUDA, the device and nvcc
  packages           gsplat 1.5.3 and the missing pure-Python packages from the wheel folder (never torch),
                     then every module the other steps import
  rasterizer build   the rasterizer with its CUDA backend, for this device's architecture only
  gsplat build       gsplat's JIT compilation of its CUDA code, in the background from here on
  rasterizer tests   submodules/rasterizer/tests/test_rasterizer_cuda.py
  training tests     tests/test_cuda_training.py without the long CPU-against-GPU trainings
  rasterizer bench   bench/rasterizer.py, ours and gsplat at 1M and 3M Gaussians at 1920x1080
  train speed        bench/train_speed.py on the GPU
  training parity    the long CPU-against-GPU trainings of tests/test_cuda_training.py, in the time left (side by
                     side where pytest-xdist is installed)

Each step has its own time limit, cut to what the budget leaves for the steps after it; a step that cannot run
says why. Prints one table and writes it as JSON (output/gpu_check/gpu_check.json), each step's log beside it.
Only the standard library is imported here: the steps run in child processes of the same Python.
"""
import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GSPLAT_VERSION = "1.5.3"
# What the steps need beyond torch: taken from the machine where it has them, from the wheel folder otherwise.
INSTALLED_FROM_WHEELS = [f"gsplat=={GSPLAT_VERSION}", "ninja", "plyfile", "tqdm", "pytest"]
# Imported by the tests and benchmarks, too large to carry as wheels: the machine must have them.
REQUIRED_MODULES = ["numpy", "scipy", "sklearn", "skimage", "cv2", "imageio", "plyfile", "tqdm", "pytest", "ninja"]
RASTERIZER_TESTS = "submodules/rasterizer/tests/test_rasterizer_cuda.py"
TRAINING_TESTS = "tests/test_cuda_training.py"
LONG_TRAINING_TESTS = "learns_as_much_as_cpu_training"
BENCH_WORKLOADS = "gpu-1m-1080p,gpu-3m-1080p"
# A step given less than this is not started.
MIN_STEP_SECONDS = 10

PROBE = """
import json, sys
report = {"python": sys.version.split()[0]}
try:
    import torch
except ImportError as error:
    report["error"] = f"torch is not importable: {error}"
else:
    report.update(torch=torch.__version__, torch_cuda=torch.version.cuda, device=None)
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        report.update(device=properties.name, capability=list(torch.cuda.get_device_capability(0)),
                      memory_gib=round(properties.total_memory / 2**30, 1))
print(json.dumps(report))
"""


@dataclass
class Step:
    name: str
    status: str = "skipped"  # ok, failed or skipped
    seconds: float = 0.0
    figures: str = ""
    log: str = ""
    details: dict = field(default_factory=dict)


class Budget:
    """Seconds left until the whole check must end."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self):
        return self.deadline - time.monotonic()

    def limit(self, cap, reserved_after):
        """A step's time limit: its cap, cut so that reserved_after seconds stay for the steps after it."""
        return min(cap, self.left() - reserved_after)


class Child:
    """A command in its own process group with its output in a log file, killed whole at its time limit."""

    def __init__(self, command, log_path, env, cwd=REPOSITORY):
        self.log_path = log_path
        self.started = time.monotonic()
        self.log_file = open(log_path, "w")
        self.log_file.write("$ " + " ".join("<script>" if "\n" in part else part for part in command) + "\n")
        self.log_file.flush()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def wait(self, timeout):
        """(return code, or None where the time limit ended it; seconds it ran)."""
        try:
            code = self.process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended just now
                pass
            self.process.wait()
            code = None
        self.log_file.close()
        return code, time.monotonic() - self.started


def run(command, log_path, env, timeout):
    return Child(command, log_path, env).wait(timeout)


def log_tail(path, lines=15):
    with open(path, errors="replace") as file:
        return [line.rstrip() for line in file.read().splitlines()[-lines:]]


def finish(step, code, seconds, timeout, figures=""):
    """Sets status, duration and figures from a child's result."""
    step.seconds = seconds
    if code is None:
        step.status, step.figures = "failed", f"timed out after {timeout:.0f} s" + (f"; {figures}" if figures else "")
    else:
        step.status = "ok" if code == 0 else "failed"
        step.figures = figures if code == 0 or figures else f"exit status {code}, see {os.path.basename(step.log)}"
    return step


OUTCOMES = "PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"


def pytest_outcomes(log_path):
    """Counts of each test outcome in a pytest -v log, readable also from a run cut off by its time limit, and the
    names of the tests that failed. Lines read `path::test OUTCOME`, or `[gw0] [ 50%] OUTCOME path::test` from
    pytest-xdist's workers."""
    with open(log_path, errors="replace") as file:
        text = file.read()
    outcomes = {name: outcome for name, outcome in re.findall(rf"^\S+?::(.+?) ({OUTCOMES})\b", text, re.MULTILINE)}
    outcomes.update({name: outcome for outcome, name in
                     re.findall(rf"^\[gw\d+\] \[\s*\d+%\] ({OUTCOMES}) \S+?::(.+?)\s*$", text, re.MULTILINE)})
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    failed = [name for name, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")]
    return counts, failed


def run_pytest(step, arguments, env, timeout, workers=1):
    """A pytest step: ok only where every selected test ran and passed (a skip on a GPU machine is a failure).
    With workers > 1 and pytest-xdist at hand, the tests run in that many processes, sharing the CPU cores."""
    if workers > 1 and importlib.util.find_spec("xdist") is not None:
        arguments = ["-n", str(workers), *arguments]
        env = dict(env, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // workers)))
    code, seconds = run([sys.executable, "-m", "pytest", "-v", "-rfEsP", "-p", "no:cacheprovider", *arguments],
                        step.log, env, timeout)
    counts, failed = pytest_outcomes(step.log)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "no test ran"
    if failed:
        summary += "; failed: " + ", ".join(failed[:4]) + (" ..." if len(failed) > 4 else "")
    finish(step, code, seconds, timeout, summary)
    step.details = dict(counts, failed=failed)
    if step.status == "ok" and (counts.get("skipped") or not counts.get("passed")):
        step.status = "failed"
    return step


def probe_environment(step, env):
    code, seconds = run([sys.executable, "-c", PROBE], step.log, env, 120)
    step.seconds = seconds
    lines = log_tail(step.log, 1)
    try:
        report = json.loads(lines[-1]) if code == 0 else {}
    except json.JSONDecodeError:
        report = {}
    nvcc = os.path.join(env["CUDA_HOME"], "bin", "nvcc")
    if os.path.isfile(nvcc):
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        report["nvcc"] = (re.findall(r"release ([\d.]+)", version) or ["?"])[0]
    step.details = report
    if "torch" not in report:
        step.status = "failed"
        step.figures = report.get("error", f"the probe failed, see {os.path.basename(step.log)}")
        return None
    step.status = "ok"
    step.figures = (f"Python {report['python']}, torch {report['torch']} (CUDA {report['torch_cuda']}), "
                    f"{report['device'] or 'no CUDA device'}, nvcc {report.get('nvcc', 'missing at ' + nvcc)}")
    if report["device"] is None:
        return "no CUDA device"
    if report["torch_cuda"] is None:
        return "torch was built without CUDA"
    if "nvcc" not in report:
        return f"no nvcc at {nvcc}"
    return None


def install_packages(step, env, wheels, timeout):
    if not os.path.isdir(wheels):
        step.status = "failed"
        step.figures = f"no wheel folder {wheels}: run `make gpu-wheels` where PyPI is reachable and carry it"
        return
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, "--no-build-isolation",
               *INSTALLED_FROM_WHEELS]
    code, seconds = run(command, step.log, env, timeout)
    check = ("import importlib.util, sys; missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]; "
             "print('missing: ' + ' '.join(missing) if missing else 'all present')")
    modules = subprocess.run([sys.executable, "-c", check, *REQUIRED_MODULES], capture_output=True, text=True,
                             env=env, timeout=60).stdout.strip()
    with open(step.log, "a") as file:
        file.write(modules + "\n")
    step.details = {"installed": code == 0, "modules": modules}
    finish(step, code, seconds, timeout, f"gsplat {GSPLAT_VERSION} installed; modules {modules}" if code == 0 else "")
    if modules.startswith("missing"):
        step.status = "failed"


def build_rasterizer(step, env, timeout):
    command = [sys.executable, "-m", "pip", "install", "-v", "--no-index", "--no-deps", "--no-build-isolation",
               "./submodules/rasterizer"]
    code, seconds = run(command, step.log, env, timeout)
    figures = ""
    if code == 0:
        check = "import gaussian_rasterizer as g; b = g.available_backends(); print(b); assert 'cuda' in b, b"
        with open(step.log, "a") as file:
            code = subprocess.run([sys.executable, "-c", check], cwd=REPOSITORY, env=env, stdout=file,
                                  stderr=subprocess.STDOUT).returncode
        figures = (f"CUDA backend built for {env['TORCH_CUDA_ARCH_LIST']}" if code == 0 else
                   f"installed without its CUDA backend, see {os.path.basename(step.log)}")
    finish(step, code, seconds, timeout, figures)


def start_gsplat_build(log_path, env):
    """gsplat compiles its CUDA code on the first import of its backend, into TORCH_EXTENSIONS_DIR."""
    code = ("from gsplat.cuda._backend import _C; "
            "raise SystemExit(0 if _C is not None else 'gsplat built no CUDA extension')")
    return Child([sys.executable, "-c", code], log_path, env)


def bench_figures(results):
    """One phrase per workload: our and gsplat's forward + backward time and peak memory, and their ratio."""
    by_key = {(r["backend"], r["workload"]): r for r in results}
    phrases = []
    for workload in BENCH_WORKLOADS.split(","):
        parts = []
        for backend, label in (("cuda", "ours"), ("gsplat", "gsplat")):
            r = by_key.get((backend, workload))
            if r:
                parts.append(f"{label} {r['forward_ms']:.1f}+{r['backward_ms']:.1f} ms {r['peak_mem_mb']:.0f} MB")
        if ("cuda", workload) in by_key and ("gsplat", workload) in by_key:
            ours, theirs = (by_key[(b, workload)]["forward_ms"] + by_key[(b, workload)]["backward_ms"]
                            for b in ("cuda", "gsplat"))
            parts.append(f"ours/gsplat time {ours / theirs:.2f}")
        phrases.append(f"{workload}: " + (", ".join(parts) or "no result"))
    return "; ".join(phrases)


def run_bench(step, env, out_dir, with_gsplat, timeout):
    json_path = os.path.join(out_dir, "rasterizer.json")
    backends = "cuda,gsplat" if with_gsplat else "cuda"
    code, seconds = run([sys.executable, "bench/rasterizer.py", "--backends", backends, "--workloads",
                         BENCH_WORKLOADS, "--json", json_path], step.log, env, timeout)
    results = []
    if code == 0 and os.path.isfile(json_path):
        with open(json_path) as file:
            results = json.load(file)["results"]
    figures = bench_figures(results) if results else f"no result, see {os.path.basename(step.log)}"
    if not with_gsplat:
        figures += ("; " if figures else "") + "gsplat not built (see gsplat build)"
    expected = len(BENCH_WORKLOADS.split(",")) * len(backends.split(","))
    if results and len(results) < expected:
        figures += f"; {len(results)} of {expected} runs gave a result, see {os.path.basename(step.log)}"
    finish(step, code, seconds, timeout, figures)
    step.details = {"results": results}
    if step.status == "ok" and (len(results) < expected or not with_gsplat):
        step.status = "failed"


def run_training_parity(step, env, timeout):
    """The three long trainings, side by side where pytest-xdist is at hand: each trains on the CPU, then on the
    GPU."""
    run_pytest(step, [TRAINING_TESTS, "-k", LONG_TRAINING_TESTS], env, timeout, workers=3)
    with open(step.log, errors="replace") as file:
        psnr = re.findall(r"(\w+): held-out PSNR ([\d.]+) dB on the CPU, ([\d.]+) dB on the GPU", file.read())
    if psnr:
        step.figures += "; PSNR CPU/GPU " + ", ".join(f"{blur} {cpu}/{gpu}" for blur, cpu, gpu in psnr)


def numeric_leaves(value, prefix=""):
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in numeric_leaves(item, f"{prefix}.{key}".strip("."))]
    return []


def run_train_speed(step, env, out_dir, timeout):
    json_path = os.path.join(out_dir, "train_speed.json")
    code, seconds = run([sys.executable, "bench/train_speed.py", "--device", "cuda", "--json", json_path],
                        step.log, env, timeout)
    report = {}
    if code == 0 and os.path.isfile(json_path):
        with open(json_path) as file:
            report = json.load(file)
    leaves = numeric_leaves(report)
    figures = ", ".join(f"{key} {value:.4g}" for key, value in leaves[:6]) + (" ..." if len(leaves) > 6 else "")
    finish(step, code, seconds, timeout, figures)
    step.details = report


def print_table(steps):
    print(f"{'step':18s} {'status':7s} {'seconds':>7s}  figures")
    for step in steps:
        print(f"{step.name:18s} {step.status:7s} {step.seconds:7.0f}  {step.figures}")


def child_environment(out_dir, capability=None):
    env = dict(os.environ)
    env["CUDA_HOME"] = env.get("CUDA_HOME") or "/usr/local/cuda"
    # pip puts ninja beside this Python, which cpp_extension runs from PATH.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.path.join(env["CUDA_HOME"], "bin"),
                                   env.get("PATH", "")])
    env["TORCH_EXTENSIONS_DIR"] = os.path.join(out_dir, "torch_extensions")
    env.update(PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PIP_BREAK_SYSTEM_PACKAGES="1")
    if capability:
        major, minor = capability
        # One architecture keeps the builds short; the same flag reaches the rasterizer's own nvcc arguments.
        env["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
        env["SPLAT_CUDA_ARCH_FLAGS"] = f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}"
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", default=os.path.join(REPOSITORY, ".gpu-wheels"),
                        help="folder of wheels made by `make gpu-wheels`")
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "output", "gpu_check"),
                        help="folder for the JSON report and the logs")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole check (default 450: 8 minutes less start-up and margin)")
    args = parser.parse_args()
    if not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")

    budget = Budget(args.budget)
    out_dir = os.path.abspath(args.out)
    wheels = os.path.abspath(args.wheels)
    # Kept from an earlier run: gsplat's build in torch_extensions/, which a rerun on the same machine loads.
    os.makedirs(out_dir, exist_ok=True)

    def step(name):
        created = Step(name, log=os.path.join(out_dir, name.replace(" ", "_") + ".log"))
        if os.path.exists(created.log):
            os.remove(created.log)
        steps.append(created)
        return created

    steps: list[Step] = []
    environment = step("environment")
    unavailable = probe_environment(environment, child_environment(out_dir))
    env = child_environment(out_dir, environment.details.get("capability"))

    names = ["packages", "rasterizer build", "gsplat build", "rasterizer tests", "training tests",
             "rasterizer bench", "train speed", "training parity"]
    if unavailable or environment.status != "ok":
        reason = unavailable or environment.figures
        for name in names:
            step(name).figures = reason
        return report(steps, out_dir, environment, budget, args.budget)

    packages = step("packages")
    install_packages(packages, env, wheels, budget.limit(120, 300))

    rasterizer = step("rasterizer build")
    gsplat = step("gsplat build")
    gsplat_child = None
    if packages.details.get("installed"):
        gsplat_child = start_gsplat_build(gsplat.log, dict(env, MAX_JOBS=str(max(1, (os.cpu_count() or 2) - 6))))
    else:
        gsplat.figures = "gsplat is not installed (see packages)"
    build_rasterizer(rasterizer, dict(env, MAX_JOBS="6"), budget.limit(300, 200))

    def attempt(name, cap, reserved_after, action):
        """Runs action(step, time limit) unless the rasterizer is missing or the budget is spent."""
        current = step(name)
        limit = budget.limit(cap, reserved_after)
        if rasterizer.status != "ok":
            current.figures = "the rasterizer did not build"
        elif limit < MIN_STEP_SECONDS:
            current.figures = f"no time left in the {args.budget:.0f} s budget"
        else:
            action(current, limit)

    attempt("rasterizer tests", 150, 150, lambda current, limit: run_pytest(current, [RASTERIZER_TESTS], env, limit))
    attempt("training tests", 150, 120, lambda current, limit: run_pytest(
        current, [TRAINING_TESTS, "-k", f"not {LONG_TRAINING_TESTS}"], env, limit))

    if gsplat_child is not None:
        # Whatever gsplat's compilation still needs, within what the benchmark and the steps after it leave.
        code, seconds = gsplat_child.wait(budget.limit(420, 120))
        finish(gsplat, code, seconds, seconds, f"gsplat {GSPLAT_VERSION} compiled its CUDA code" if code == 0 else "")
    attempt("rasterizer bench", 120, 60,
            lambda current, limit: run_bench(current, env, out_dir, gsplat.status == "ok", limit))
    if os.path.isfile(os.path.join(REPOSITORY, "bench", "train_speed.py")):
        attempt("train speed", 90, 0, lambda current, limit: run_train_speed(current, env, out_dir, limit))
    else:
        step("train speed").figures = "bench/train_speed.py is not in this tree"
    attempt("training parity", 600, 0, lambda current, limit: run_training_parity(current, env, limit))
    return report(steps, out_dir, environment, budget, args.budget)


def report(steps, out_dir, environment, budget, budget_seconds):
    """Prints the logs' ends of failed steps, then the table; writes the JSON. Returns the exit status."""
    for step in steps:
        if step.status == "failed" and os.path.isfile(step.log):
            print(f"--- {step.name} failed; the end of {step.log}:")
            print("\n".join(log_tail(step.log)))
    print()
    print_table(steps)
    elapsed = budget_seconds - budget.left()
    summary = dict(device=environment.details, seconds=round(elapsed, 1), budget_seconds=budget_seconds,
                   steps=[asdict(step) for step in steps])
    json_path = os.path.join(out_dir, "gpu_check.json")
    with open(json_path, "w") as file:
        json.dump(summary, file, indent=2)
    print(f"{elapsed:.0f} s in all; wrote {json_path}")
    if any(step.status == "failed" for step in steps):
        return 1
    # Nothing was checked without a device: not a success.
    return 0 if all(step.status == "ok" for step in steps) else 2


if __name__ == "__main__":
    sys.exit(main())
