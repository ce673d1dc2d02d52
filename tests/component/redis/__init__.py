"""Component tests of Redis Sentinel: real redis-server/redis-sentinel processes running the rendered files."""
