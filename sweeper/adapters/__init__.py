"""Thin adapters between the core and files or services (YAML now; Ray, MLflow, Parquet as
they arrive). Only modules here may import those packages."""
