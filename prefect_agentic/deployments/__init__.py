"""What ``prefect deploy`` runs for the pack's deployments (see ``steps``)."""
