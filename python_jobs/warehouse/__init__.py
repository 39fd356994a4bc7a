"""Warehouse operations: the database, migrations, dbt, the nightly pipeline and erasure."""
