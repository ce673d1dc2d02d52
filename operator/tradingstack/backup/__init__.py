"""The backup tool run by the backup CronJob and restore Jobs: `python -m tradingstack.backup --help`.

A backup is a `pg_dump` custom-format archive `<name>.dump` plus its manifest `<name>.json` in one directory.
The manifest is written last, by rename, so it is the commit point: an archive without a manifest, or a
`.partial` file, is never listed, restored or counted by retention.
"""
