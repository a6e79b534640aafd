"""Publish one message the way a Tsuru app bound to a PushaaS instance does.

    python examples/publish.py CHANNEL TEXT

The app's environment (PUSHAAS_ENDPOINT, PUSHAAS_USERNAME, PUSHAAS_PASSWORD and
PUSHAAS_PUSH_STREAM_URL) comes from `tsuru service-instance-bind`, or locally from
`eval "$(pushaas instance bind mypush --app myapp --shell)"`.
"""

import sys

from pushaas import PushaasError, PushClient, RateLimited


def main(channel: str, text: str) -> int:
    with PushClient.from_env() as push:
        try:
            push.ensure_channel(channel)
            message_id = push.publish([channel], text)
        except RateLimited as exc:
            print(f"over the plan's publish rate, retry in {exc.retry_after}s", file=sys.stderr)
            return 1
        except PushaasError as exc:
            print(f"publish failed: {exc.message} (status {exc.status})", file=sys.stderr)
            return 1

        print(f"published {message_id}")
        print(f"browsers subscribe at {push.subscribe_url(channel)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CHANNEL TEXT")
    sys.exit(main(sys.argv[1], sys.argv[2]))
