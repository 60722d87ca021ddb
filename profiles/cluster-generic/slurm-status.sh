#!/usr/bin/env bash
# Status command of the generic cluster executor on SLURM: prints running, success or failed
# for one job id (Snakemake's --cluster-generic-status-cmd contract). Without a status command
# the executor only notices jobs that end by themselves; a job the scheduler kills (scancel,
# time or memory limit) would be waited on forever.
# sacct, not squeue: squeue forgets a job MinJobAge after it ends. "CANCELLED by <uid>" is a
# failure; an id that sacct does not know yet (just submitted) is still running.
set -u
state=$(sacct -j "$1" -X -n -P -o State 2>/dev/null | head -n 1)
case "$state" in
  COMPLETED*) echo success ;;
  ""|PENDING*|CONFIGURING*|RUNNING*|COMPLETING*|REQUEUED*|RESIZING*|SUSPENDED*|STAGE_OUT*|SIGNALING*) echo running ;;
  *) echo failed ;;  # CANCELLED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE
esac
