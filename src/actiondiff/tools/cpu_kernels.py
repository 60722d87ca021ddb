"""CPU kernels that give the same numbers on every x86-64 CPU (`portable`), or the fastest ones each
CPU has (`native`, torch's default).

torch picks its CPU kernels per machine: ATen's vectorised kernels (softmax, GELU, norms,
attention) per instruction set (AVX-512, AVX2 or the plain `default` build), oneDNN's
convolutions per CPU (it promises identical results only on identical hardware), MKL's GEMM per CPU.
Each rounds differently, so the same demo gave other features, other heads and other accuracies
on an AVX2-only machine than on an AVX-512 one. `portable` pins each of them to a path that does
not depend on the CPU:

- `ATEN_CPU_CAPABILITY=default`: ATen's kernels compiled for plain x86-64, not per ISA;
- `torch.backends.mkldnn.enabled = False`: no oneDNN; convolutions go to ATen's im2col + GEMM;
- `MKL_CBWR=COMPATIBLE`, `MKL_DYNAMIC=FALSE`: MKL's conditional numerical reproducibility, one
  code path on all Intel and compatible processors (as long as the thread count is fixed:
  Snakemake runs every job with `OMP_NUM_THREADS` = its threads, 1 here);
- `NPY_DISABLE_CPU_FEATURES` = every instruction set NumPy dispatches to beyond its baseline
  (x86-64-v2): its SIMD loops (sums, for one) are chosen per CPU too. NumPy reads it when it is
  imported, so it must be in the environment a process starts with: `portable_env()` gives it
  to children, `pin_cpu_kernels` refuses a process that lacks it.

The workflow runs `portable` unless `ACTIONDIFF_CPU_KERNELS=native` is set: the Snakefile puts
`kernel_env()` into the environment of every job (and builds the demo's tiny weights in such a
process), `actiondiff`'s `main` applies the torch part and checks the rest. GPU kernels are not
touched. README "Numbers that reproduce" has the measured cost.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ENV_VAR = "ACTIONDIFF_CPU_KERNELS"
MODES = ("portable", "native")
# Read by ATen and MKL when they first pick a kernel: set before torch runs one.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE"}


def kernel_mode(environ: MutableMapping[str, str] = os.environ) -> str:
    """The mode `environ` asks for (`native` when unset).

    Raises:
        ValueError: an unknown mode, named with the variable.
    """
    mode = environ.get(ENV_VAR, "native").strip().lower()
    if mode not in MODES:
        raise ValueError(f"Expected `{ENV_VAR}` to be one of {', '.join(MODES)}, but got {environ[ENV_VAR]!r} (environment).")
    return mode


def numpy_dispatched() -> list[str]:
    """The instruction sets this NumPy dispatches to beyond its baseline (e.g. X86_V3, X86_V4)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return list(__cpu_dispatch__)


def numpy_uses() -> list[str]:
    """The dispatched instruction sets this process's NumPy uses (none when pinned)."""
    from numpy._core._multiarray_umath import __cpu_features__

    return [name for name in numpy_dispatched() if __cpu_features__.get(name)]


def portable_env() -> dict[str, str]:
    """The variables a process must start with to run the portable kernels (NumPy's included)."""
    return {ENV_VAR: "portable", **PORTABLE_ENV, "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_dispatched())}


def kernel_env(mode: str) -> dict[str, str]:
    """The variables for child processes of `mode` (validated like `kernel_mode`)."""
    return portable_env() if kernel_mode({ENV_VAR: mode}) == "portable" else {ENV_VAR: mode}


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> str:
    """Apply the mode of `environ` to this process (call before any torch work); returns it.

    `portable` overrides ATEN_CPU_CAPABILITY / MKL_CBWR values set in the environment, so a
    machine's own tuning cannot undo it, and turns oneDNN off in torch.

    Raises:
        RuntimeError: `portable`, but NumPy was imported without its variable or torch already
            ran a kernel: the process must start with `portable_env()`.
    """
    mode = kernel_mode(environ)
    if mode == "portable":
        environ.update(PORTABLE_ENV)
        import torch  # after the variables: torch reads them when it first picks a kernel

        torch.backends.mkldnn.enabled = False
        late = [f"NumPy uses {' '.join(numpy_uses())}"] if numpy_uses() else []
        if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
            late.append(f"torch uses its {torch.backends.cpu.get_cpu_capability()} kernels")
        if late:
            variables = " ".join(f"{k}='{v}'" for k, v in portable_env().items())
            raise RuntimeError(f"Expected {ENV_VAR}=portable to be applied before NumPy and torch pick their kernels, "
                               f"but {' and '.join(late)} (this process). Start it with {variables}.")
    return mode
