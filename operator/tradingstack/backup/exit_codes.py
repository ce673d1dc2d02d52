"""Exit statuses of the backup tool, shared with the renderer (a Job fails at once on a refusal)."""

EXIT_FAILED = 1
EXIT_REFUSED = 3
"""A restore refused because the database is not empty and --force was not given."""
