"""The event log, owned once: its schema (`schema`), the relational steps every reader shares
(`relational`), and the engines that run them (`engine`: DuckDB here, Spark on a cluster).

Importing this package loads neither engine: the service only needs the schema.
"""

from botify.events.schema import FIELDS, MAX_LINE_BYTES, SCHEMA_VERSION, event

__all__ = ["FIELDS", "MAX_LINE_BYTES", "SCHEMA_VERSION", "event"]
