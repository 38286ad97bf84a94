"""Build of the `gaussian_rasterizer` package.

The CPU backend is always built. The CUDA backend is built only where the
installed torch was built with CUDA and a CUDA toolkit is found.
"""
import os
from pathlib import Path

# cpp_extension guesses CUDA_HOME from the first `nvcc` on PATH, which may be a
# wrapper script outside the toolkit; point it at the real toolkit first.
if "CUDA_HOME" not in os.environ and Path("/usr/local/cuda/bin/nvcc").exists():
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

try:
    import torch  # noqa: E402
except ImportError as error:
    raise SystemExit(
        "gaussian_rasterizer builds against the installed torch: install torch first, then run "
        "`pip install --no-build-isolation ./submodules/rasterizer`"
    ) from error
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

HERE = Path(__file__).parent.resolve()
CSRC = HERE / "csrc"


def relative(paths):
    return sorted(str(p.relative_to(HERE)) for p in paths)


def cpu_extension():
    # GCC vectorises the blend loops only where floating-point operations may be
    # speculated (no traps) and sqrt need not set errno. Unlike -ffast-math,
    # neither flag changes a result.
    return CppExtension(
        name="gaussian_rasterizer._cpu",
        sources=relative((CSRC / "cpu").glob("*.cpp")),
        include_dirs=[str(CSRC)],
        extra_compile_args=["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp", "-std=c++17"],
        extra_link_args=["-fopenmp"],
    )


def cuda_extension():
    cuda_sources = list((CSRC / "cuda").glob("*.cu")) + list((CSRC / "cuda").glob("*.cpp"))
    arch_flags = os.environ.get("SPLAT_CUDA_ARCH_FLAGS", "").split()
    return CUDAExtension(
        name="gaussian_rasterizer._cuda",
        sources=relative(cuda_sources),
        include_dirs=[str(CSRC)],
        extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": ["-O3", "-std=c++17", *arch_flags]},
    )


def wants_cuda():
    if os.environ.get("SPLAT_SKIP_CUDA") == "1":
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None and any((CSRC / "cuda").glob("*.cu"))


extensions = [cpu_extension()]
if wants_cuda():
    extensions.append(cuda_extension())

setup(
    name="gaussian_rasterizer",
    version="0.1.0",
    description="Differentiable tile-based Gaussian splatting rasterizer with CPU and CUDA backends",
    packages=["gaussian_rasterizer"],
    # PEP 561: the package's type hints are read where it is installed.
    package_data={"gaussian_rasterizer": ["py.typed"]},
    python_requires=">=3.9",
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
