"""Cron and time-zone logic with an injected clock: every function takes the current time as an argument.

Pure: no clock reads, no I/O. `cron` iterates a five-field schedule in an IANA time zone (DST handled the way
Debian cron does, through cronsim); `restarts` applies it to the daily restarts (due runs, catch-up window,
suspension, order, run identifiers).
"""
