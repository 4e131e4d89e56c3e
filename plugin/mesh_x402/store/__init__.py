"""Durable state: the SQLite (WAL) journal of payments, later receipts and settlements."""
