"""Prefect flows: ``flows.pipeline.pipeline`` runs the stages of ``dvc.yaml`` in order, through DVC."""
