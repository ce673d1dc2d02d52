"""PostgreSQL backups and restores against a real server."""
