"""The lake: Parquet files under ``events/`` committed to an Apache Iceberg table."""
