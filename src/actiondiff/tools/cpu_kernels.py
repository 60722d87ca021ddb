"""CPU kernels that give the same numbers on every x86-64 CPU (`portable`), or the fastest ones each
CPU has (`native`, torch's default).

torch picks its CPU kernels per machine: ATen's vectorised kernels (softmax, GELU, norms,
attention) per instruction set (AVX-512, AVX2 or the plain `default` build), oneDNN's
convolutions per instruction set (and blocks them by the CPU's cache sizes), MKL's GEMM per CPU.
Each rounds differently, so the same demo gave other features, other heads and other accuracies
on an AVX2-only machine than on an AVX-512 one. `portable` pins each of them to a path that does
not depend on the CPU:

- `ATEN_CPU_CAPABILITY=default`: ATen's kernels compiled for plain x86-64, not per ISA;
- `torch.backends.mkldnn.enabled = False`: no oneDNN; convolutions go to ATen's im2col + GEMM;
- `MKL_CBWR=COMPATIBLE`, `MKL_DYNAMIC=FALSE`: MKL's conditional numerical reproducibility, one
  code path on all Intel and compatible processors (as long as the thread count is fixed:
  Snakemake runs every job with `OMP_NUM_THREADS` = its threads, 1 here).

The workflow's jobs run `portable` unless `ACTIONDIFF_CPU_KERNELS=native` is set (the Snakefile
sets the default, `actiondiff`'s `main` applies it before torch runs a kernel). GPU kernels are
not touched. README "Numbers that reproduce" has the measured cost.
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


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> str:
    """Apply the mode of `environ` to this process (call before any torch work); returns it.

    `portable` overrides ATEN_CPU_CAPABILITY / MKL_CBWR values set in the environment, so a
    machine's own tuning cannot undo it, and turns oneDNN off in torch.
    """
    mode = kernel_mode(environ)
    if mode == "portable":
        environ.update(PORTABLE_ENV)
        import torch  # after the variables: torch reads them when it first picks a kernel

        torch.backends.mkldnn.enabled = False
        if torch.backends.cpu.get_cpu_capability() != "DEFAULT":  # a kernel ran before the variable was set
            raise RuntimeError(f"Expected {ENV_VAR}=portable to be applied before torch ran a CPU kernel, but torch "
                               f"already uses its {torch.backends.cpu.get_cpu_capability()} kernels (this process).")
    return mode
