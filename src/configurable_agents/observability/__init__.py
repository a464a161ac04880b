"""Observability: pricing now; MLflow tracing, OpenTelemetry and Prometheus build on it."""
