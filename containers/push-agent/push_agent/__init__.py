"""push-agent: moves an instance's Redis stream into its own nginx + Nchan.

One agent runs beside each push-stream nginx. It reads the instance stream from its own
cursor, publishes one JSON envelope per (entry, channel) to nginx, reports stats and keeps
persistent channels alive. Run it with ``python -m push_agent``.
"""
