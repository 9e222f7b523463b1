"""The Slurm test bed works: a 2-task array job runs both tasks and leaves the queue."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slurm


def test_array_job_runs_both_tasks(slurm_cluster, tmp_path):
    assert slurm_cluster.up_s < 30, f"the bed took {slurm_cluster.up_s}s to start"
    out = tmp_path / "out"
    out.mkdir()
    wrap = f'echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID" > {out}/task-$SLURM_ARRAY_TASK_ID'
    job = slurm_cluster.sbatch("--array=0-1", "--job-name=bed-check", wrap=wrap)
    took = slurm_cluster.wait_gone(job, timeout=60)
    for task in (0, 1):
        f = out / f"task-{task}"
        assert f.exists(), f"task {task} wrote nothing (array {job}, {took:.1f}s)\n{slurm_cluster.log_tails()}"
        assert f.read_text().split() == [job, str(task)]
    records = slurm_cluster.job_info(job)  # still known for MinJobAge after it ended
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]
    assert {r["JobState"] for r in records} == {"COMPLETED"}
    assert slurm_cluster.squeue() == []
