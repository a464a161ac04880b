"""Observability: prices, MLflow traces and runs recorded through a durable spool, store upkeep."""
