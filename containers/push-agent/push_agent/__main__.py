"""``python -m push_agent``: validate the environment, then run the agent until a signal."""

import asyncio
import os
import sys

from push_agent.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"push-agent: configuration error: {exc}", file=sys.stderr)
        return 2

    from push_agent import logs
    from push_agent.agent import Agent, new_event_loop

    logs.configure(settings.log_level)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(Agent(settings).run())


if __name__ == "__main__":
    sys.exit(main())
