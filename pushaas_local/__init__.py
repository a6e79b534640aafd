"""Local mode: the delivery tier as processes on this machine, and the stack around it.

On AWS, SQS delivers jobs and ECS runs each instance's replicas. Locally the runner
consumes the Redis job queue and the ``local`` provisioner starts, supervises and stops
nginx + agent processes, so the same job code serves development, tests and production.
"""
