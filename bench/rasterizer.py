"""Forward and backward timings of every available rasterizer backend.

    python bench/rasterizer.py [--json PATH] [--backends reference,cpu,cuda,gsplat] [--workloads ...]

Workloads are fixed and seeded: `cpu-64k-640x480` for the CPU backends, and
`gpu-1m-1080p` and `gpu-3m-1080p` for the GPU ones. `gsplat` is gsplat's
rasterization() on the same scenes with the same settings (see gsplat_renderer);
`make gpu-check` installs gsplat 1.5.3 for it. Each (backend, workload)
runs in its own process so that its peak memory is its own. Times are medians
over repeated runs after a warm-up; CUDA times are taken between device
synchronisations.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

WORKLOADS = {
    "cpu-64k-640x480": dict(n=64_000, width=640, height=480),
    "gpu-1m-1080p": dict(n=1_000_000, width=1920, height=1080),
    "gpu-3m-1080p": dict(n=3_000_000, width=1920, height=1080),
}
BACKEND_WORKLOADS = {
    "reference": ["cpu-64k-640x480"],
    "cpu": ["cpu-64k-640x480"],
    "cuda": ["cpu-64k-640x480", "gpu-1m-1080p", "gpu-3m-1080p"],
    "gsplat": ["cpu-64k-640x480", "gpu-1m-1080p", "gpu-3m-1080p"],
}
REPEATS = {"reference": 1, "cpu": 5, "cuda": 20, "gsplat": 20}


def make_scene(n, width, height, device):
    """Gaussians filling the view frustum between depths 3 and 8, radii of a few pixels at 640x480."""
    g = torch.Generator().manual_seed(0)
    focal = 0.8 * width
    depth = 3 + 5 * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * width / focal * depth
    y = (torch.rand(n, generator=g) - 0.5) * height / focal * depth
    # Scale with the image width so that 1080p workloads keep the same screen coverage per Gaussian.
    pixel_scale = 640.0 / width * math.sqrt(64_000 / n)
    scene = dict(
        means=torch.stack([x, y, depth], dim=1),
        scales=torch.exp(torch.randn(n, 3, generator=g) * 0.4 + math.log(0.012 * pixel_scale)),
        rotations=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1),
        opacities=torch.rand(n, 1, generator=g) * 0.7 + 0.3,
        sh_coeffs=torch.randn(n, 16, 3, generator=g) * 0.3,
    )
    scene = {k: v.to(device) for k, v in scene.items()}
    view = torch.eye(4, device=device)
    intrinsics = dict(fx=focal, fy=focal, cx=width / 2, cy=height / 2, width=width, height=height)
    return scene, view, intrinsics


def our_renderer(backend, scene, view, intrinsics):
    from gaussian_rasterizer import Camera, rasterize_gaussians

    camera = Camera(view, **intrinsics)

    def render(params):
        return rasterize_gaussians(params["means"], params["scales"], params["rotations"], params["opacities"],
                                   camera, sh_coeffs=params["sh_coeffs"], sh_degree=3, backend=backend).image
    return render


def gsplat_renderer(scene, view, intrinsics):
    """gsplat's rasterization() set up as ours renders: the same pinhole camera, near and far planes, 16-pixel
    tiles, 0.3 px^2 added to every screen covariance, SH colours offset by 0.5 and clamped at 0, a black
    background, and colour, expected depth and alpha all rendered. Per-Gaussian (unpacked) buffers, as ours."""
    import gsplat

    from gaussian_rasterizer import Camera

    camera = Camera(view, **intrinsics)
    K = torch.tensor([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]], device=view.device)

    def render(params):
        colors, _, _ = gsplat.rasterization(
            params["means"], params["rotations"], params["scales"], params["opacities"][:, 0], params["sh_coeffs"],
            view[None], K[None], camera.width, camera.height, near_plane=camera.near, far_plane=camera.far, eps2d=0.3,
            sh_degree=3, packed=False, tile_size=16, render_mode="RGB+ED", rasterize_mode="classic")
        return colors[0, :, :, :3].permute(2, 0, 1)
    return render


def measure(backend, workload):
    """Runs in a worker process; returns one result record."""
    device = "cuda" if backend in ("cuda", "gsplat") else "cpu"
    scene, view, intrinsics = make_scene(**WORKLOADS[workload], device=device)
    render = (gsplat_renderer(scene, view, intrinsics) if backend == "gsplat"
              else our_renderer(backend, scene, view, intrinsics))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()

    forward_ms, backward_ms = [], []
    for i in range(REPEATS[backend] + 1):  # the first run warms up
        params = {k: v.detach().clone().requires_grad_(True) for k, v in scene.items()}
        sync()
        start = time.perf_counter()
        image = render(params)
        sync()
        middle = time.perf_counter()
        image.sum().backward()
        sync()
        end = time.perf_counter()
        if i > 0 or REPEATS[backend] == 1:
            forward_ms.append((middle - start) * 1e3)
            backward_ms.append((end - middle) * 1e3)

    if device == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return dict(backend=backend, workload=workload, forward_ms=statistics.median(forward_ms),
                backward_ms=statistics.median(backward_ms), peak_mem_mb=peak_mb,
                device=torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
                repeats=len(forward_ms))


def available(backend):
    if backend == "gsplat":
        try:
            import gsplat  # noqa: F401
        except ImportError:
            return False
        return torch.cuda.is_available()
    from gaussian_rasterizer import available_backends
    return backend in available_backends()


def print_table(results):
    print(f"{'backend':10s} {'workload':18s} {'forward ms':>11s} {'backward ms':>12s} {'fwd+bwd ms':>11s} "
          f"{'peak MB':>9s}")
    for r in results:
        print(f"{r['backend']:10s} {r['workload']:18s} {r['forward_ms']:11.1f} {r['backward_ms']:12.1f} "
              f"{r['forward_ms'] + r['backward_ms']:11.1f} {r['peak_mem_mb']:9.0f}")
    by_key = {(r["backend"], r["workload"]): r["forward_ms"] + r["backward_ms"] for r in results}
    for (backend, workload), total in sorted(by_key.items()):
        if backend != "reference" and ("reference", workload) in by_key:
            speedup = by_key[("reference", workload)] / total
            print(f"{backend} is {speedup:.0f}x faster than the reference on {workload}")
        if backend == "cuda" and ("gsplat", workload) in by_key:
            print(f"cuda / gsplat time on {workload}: {total / by_key[('gsplat', workload)]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--backends", default="reference,cpu,cuda,gsplat")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends, workloads = args.backends.split(","), args.workloads.split(",")
    for option, names, known in (("--backends", backends, BACKEND_WORKLOADS), ("--workloads", workloads, WORKLOADS)):
        unknown = [name for name in names if name not in known]
        if unknown:
            parser.error(f"{option}: unknown {', '.join(map(repr, unknown))} (choose from {', '.join(known)})")

    if args.worker:
        print(json.dumps(measure(*args.worker)))
        return

    results = []
    for backend in backends:
        if not available(backend):
            print(f"{backend}: not available here, skipped", file=sys.stderr)
            continue
        for workload in BACKEND_WORKLOADS[backend]:
            if workload not in workloads:
                continue
            run = subprocess.run([sys.executable, __file__, "--worker", backend, workload], capture_output=True,
                                 text=True)
            if run.returncode != 0:
                print(f"{backend} on {workload} failed:\n{run.stderr}", file=sys.stderr)
                continue
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  {backend} {workload}: {r['forward_ms']:.1f} + {r['backward_ms']:.1f} ms", file=sys.stderr)
    print_table(results)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"results": results}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
