"""The agent on ECS: it names itself after its task, and its cursor expires when unused."""

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from push_agent.cursor import CursorStore
from push_agent.settings import Settings, SettingsError

from chalicelib import keys

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/pushaas/0123456789abcdef0123456789abcdef"
BASE = {"PUSHAAS_REDIS_URL": "redis://127.0.0.1:1/0", "PUSHAAS_INSTANCE": "mypush",
        "PUSHAAS_NGINX_URL": "http://127.0.0.1:9081"}


class Metadata(http.server.BaseHTTPRequestHandler):
    body = json.dumps({"TaskARN": TASK_ARN}).encode()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        status = 200 if self.path.endswith("/task") else 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metadata_uri() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v4/container-id"
    server.shutdown()
    server.server_close()


def test_agent_id_is_the_ecs_task_id(metadata_uri):
    settings = Settings.from_env({**BASE, "ECS_CONTAINER_METADATA_URI_V4": metadata_uri})

    assert settings.agent_id == "0123456789abcdef0123456789abcdef"
    assert settings.agent_id in settings.heartbeat_path


def test_explicit_agent_id_wins(metadata_uri):
    env = {**BASE, "ECS_CONTAINER_METADATA_URI_V4": metadata_uri, "PUSHAAS_AGENT_ID": "r-0"}

    assert Settings.from_env(env).agent_id == "r-0"


def test_unreachable_metadata_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("push_agent.ecs_task.DEADLINE", 0.2)
    env = {**BASE, "ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:1/v4/x"}

    with pytest.raises(SettingsError, match="ECS task metadata"):
        Settings.from_env(env)


def test_cursor_saves_renew_a_ttl(redis_client):
    async def save() -> None:
        client = aioredis.Redis.from_url(
            f"redis://127.0.0.1:{redis_client.connection_pool.connection_kwargs['port']}/0")
        await CursorStore(client, "mypush", "task-1", ttl=3600).save("1-0")
        await client.aclose()

    asyncio.run(save())

    assert 3500 < redis_client.ttl(keys.cursor("mypush", "task-1")) <= 3600
