"""The ``pushaas`` command line: instances through the broker, messages and channels
through the push-api, subscriptions through push-stream. It speaks only public HTTP APIs.
"""
