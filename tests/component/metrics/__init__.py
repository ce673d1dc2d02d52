"""Component tests of the exporter sidecars: the rendered container's command and env, run with the exporter binary
of the Debian package against real redis-server and postgres processes on 127.0.0.1."""
