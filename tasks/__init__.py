"""Prefect tasks: one per pipeline stage, each running the stage through DVC (see ``tasks.stages``)."""

from tasks.stages import STAGE_TASKS, StageFailed, dvc_status, stage_task

__all__ = ["STAGE_TASKS", "StageFailed", "dvc_status", "stage_task"]
