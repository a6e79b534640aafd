"""The web console in real headless Chromium, against the whole local stack.

The browser is Debian's ``chromium`` driven by Playwright; nothing is mocked: the page
calls the broker and the push-api over HTTP and its live pane subscribes to nginx +
Nchan. ``PUSHAAS_SCREENSHOTS=1`` also refreshes the screenshots in ``docs/``.
"""

import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.stack import REPO, LocalStack

pytestmark = pytest.mark.timeout(60)

CHROMIUM = (os.environ.get("PUSHAAS_CHROMIUM") or shutil.which("chromium")
            or "/usr/bin/chromium")
# Root needs --no-sandbox; the rest keeps Chromium from calling home on a machine whose
# only network is the package registries. Playwright gives each launch a fresh profile.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
SCREENSHOTS = os.environ.get("PUSHAAS_SCREENSHOTS") == "1"
WAIT_MS = 20_000




@pytest.fixture(scope="module")
def publisher_env(stack: LocalStack, broker: httpx.Client) -> dict[str, str]:
    """A running instance bound to an app: the credentials a publisher signs in with."""
    fields = {"name": "shop", "plan": "small", "team": "web", "user": "dev@example.com"}
    assert broker.post("/resources", data=fields).status_code == 201
    stack.wait_for_status(broker, "shop", 204)

    bound = broker.post("/resources/shop/bind-app", data={"app-name": "shop-app"})
    assert bound.status_code == 201, bound.text
    return bound.json()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "chromium missing: `make test` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def open_console(browser: Browser, stack: LocalStack, width: int = 1280,
                 height: int = 900) -> tuple[Page, list[str]]:
    """A fresh tab on /console and the list its script errors and CSP violations go to."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"CSP: {message.text}")

    page.on("console", on_console)
    page.goto(f"{stack.api}/console")
    return page, problems


@pytest.fixture
def console(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    page, problems = open_console(browser, stack)
    yield page
    page.context.close()
    assert problems == []


def sign_in(page: Page, role: str, username: str, password: str) -> None:
    page.get_by_label(role).check()
    page.get_by_label("User", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=REPO / "docs" / name, full_page=True)


def fill_chart(page: Page, env: dict[str, str]) -> None:
    """Publish bursts one chart second apart, so the screenshot shows a real curve."""
    samples = "document.querySelector('#live-chart polyline').points.numberOfItems"
    with httpx.Client(base_url=env["PUSHAAS_ENDPOINT"], trust_env=False,
                      auth=(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"])) as publisher:
        for burst in (2, 5, 3, 6, 4, 1, 3, 2):
            drawn = page.evaluate(samples)
            for n in range(burst):
                publisher.post("/api/v1/messages",
                               json={"channels": ["news"], "content": f"price update {n}"})
            page.wait_for_function(f"drawn => {samples} > drawn", arg=drawn)


def test_publisher_creates_publishes_and_sees_it_live(console: Page,
                                                      publisher_env: dict[str, str]) -> None:
    sign_in(console, "Publisher", publisher_env["PUSHAAS_USERNAME"],
            publisher_env["PUSHAAS_PASSWORD"])
    expect(console.get_by_role("heading", name="Instance shop")).to_be_visible()
    expect(console.locator("#push-stream-url")).to_have_text(
        publisher_env["PUSHAAS_PUSH_STREAM_URL"])
    assert "shop" in console.evaluate("sessionStorage.getItem('pushaas.console.session')")
    console.reload()
    expect(console.get_by_role("heading", name="Instance shop")).to_be_visible()

    console.get_by_label("Channel id").fill("news")
    console.get_by_role("button", name="Create channel").click()
    row = console.locator("tr[data-channel=news]")
    expect(row).to_be_visible()

    console.get_by_role("button", name="Watch news live").click()
    expect(console.locator("#live-state")).to_contain_text("Connected to news")
    console.get_by_label("Channels (separated").fill("news")
    for text in ("hello from the console", "second <b>message</b>"):
        console.get_by_label("Content").fill(text)
        console.get_by_role("button", name="Publish").click()
        expect(console.locator("#publish-result")).to_contain_text(re.compile(r"id \d+-\d+"))
        expect(console.locator("#live-messages li").first).to_contain_text(text)

    # Agents report every few seconds and the console polls: on a loaded machine the two
    # can add up past Playwright's default 5 s.
    expect(row.locator("td[data-label=Subscribers]")).to_have_text(re.compile(r"^[1-9]"),
                                                                   timeout=20_000)
    expect(row.locator("td[data-label=Messages]")).to_have_text(re.compile(r"^[1-9]"),
                                                                timeout=20_000)
    expect(console.locator("#chart-summary")).to_contain_text("subscribers now")
    assert console.locator("#live-chart polyline").count() == 2
    if SCREENSHOTS:
        fill_chart(console, publisher_env)
        screenshot(console, "console-instance.png")

    console.get_by_label("Content").fill("")
    console.get_by_label("Channels (separated").fill("bad channel!")
    console.get_by_label("Content").fill("x")
    console.get_by_role("button", name="Publish").click()
    expect(console.locator("#publish-result")).to_contain_text("invalid channel id")

    console.get_by_role("button", name="Sign out").click()
    expect(console.get_by_role("heading", name="Sign in")).to_be_visible()
    assert console.evaluate("sessionStorage.length + localStorage.length") == 0
    assert console.context.cookies() == []
    expect(console.locator("#live-messages li")).to_have_count(0)


def test_operator_creates_watches_and_removes_an_instance(console: Page, stack: LocalStack,
                                                          publisher_env: dict[str, str]) -> None:
    sign_in(console, "Operator", "pushaas", stack.broker_password())
    expect(console.locator("tr[data-instance=shop]")).to_have_attribute("data-status", "running")
    expect(console.locator("#create-plan option")).to_have_count(3)

    # Record every status the new row ever shows, so a quick pending is not missed.
    console.evaluate("""() => {
        window.seenStatuses = [];
        new MutationObserver(() => {
            const row = document.querySelector('tr[data-instance=fresh]');
            const status = row && row.dataset.status;
            if (status && window.seenStatuses.at(-1) !== status) window.seenStatuses.push(status);
        }).observe(document.body, {subtree: true, attributes: true, childList: true});
    }""")
    console.get_by_label("Name", exact=True).fill("fresh")
    console.get_by_label("Plan", exact=True).select_option("small")
    console.get_by_label("Team", exact=True).fill("ops")
    console.get_by_role("button", name="Create", exact=True).click()

    fresh = console.locator("tr[data-instance=fresh]")
    expect(fresh).to_have_attribute("data-status", "running")
    assert console.evaluate("window.seenStatuses")[:2] == ["pending", "running"]
    expect(console.locator("#instance-result")).to_have_text("fresh is running.")
    expect(fresh.locator("td[data-label=Subscribers]")).to_have_text("0")
    screenshot(console, "console-operator.png")

    fresh.get_by_label("Plan for fresh").select_option("medium")
    console.get_by_role("button", name="Change plan of fresh").click()
    expect(fresh.locator("td[data-label=Replicas]")).to_have_text("2")

    console.once("dialog", lambda dialog: dialog.accept())
    console.get_by_role("button", name="Remove fresh").click()
    expect(fresh).to_have_count(0)
    assert "removing" in console.evaluate("window.seenStatuses")
    expect(console.locator("#instance-result")).to_have_text("fresh is gone.")
    assert broker_status(stack, "fresh") == 404


def broker_status(stack: LocalStack, name: str) -> int:
    with stack.broker() as client:
        return client.get(f"/resources/{name}/status").status_code


def test_page_and_assets_are_served_with_strict_headers(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.api, trust_env=False, timeout=10) as http:
        page = http.get("/console")
        script = http.get("/console/app.js")
        unknown = http.get("/console/..%2Fapp.py")
        again = http.get("/console/app.js", headers={"If-None-Match": script.headers["etag"]})

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    for response in (page, script):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-cache"
    assert unknown.status_code == 404 and unknown.json()["code"] == 404
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("role", ["Publisher", "Operator"])
def test_wrong_password_shows_the_api_error(console: Page, publisher_env: dict[str, str],
                                            role: str) -> None:
    user = publisher_env["PUSHAAS_USERNAME"] if role == "Publisher" else "pushaas"
    sign_in(console, role, user, "not-the-password")

    expect(console.locator("#sign-in-result")).to_have_text("invalid credentials")
    expect(console.get_by_role("heading", name="Sign in")).to_be_visible()
    assert console.evaluate("sessionStorage.length") == 0


def test_phone_screen_fits_without_horizontal_scrolling(browser: Browser, stack: LocalStack,
                                                        publisher_env: dict[str, str]) -> None:
    with httpx.Client(base_url=publisher_env["PUSHAAS_ENDPOINT"], trust_env=False,
                      auth=(publisher_env["PUSHAAS_USERNAME"],
                            publisher_env["PUSHAAS_PASSWORD"])) as publisher:
        assert publisher.post("/api/v1/channels", json={"id": "phone", "ttl": 60}).is_success

    page, problems = open_console(browser, stack, width=375, height=667)
    try:
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert fits(page)

        sign_in(page, "Publisher", publisher_env["PUSHAAS_USERNAME"],
                publisher_env["PUSHAAS_PASSWORD"])
        for name in ("Publish", "Create channel", "Connect", "Sign out"):
            expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
        expect(page.locator("tr[data-channel=phone]")).to_be_visible()
        assert fits(page)

        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "Operator", "pushaas", stack.broker_password())
        expect(page.locator("tr[data-instance=shop]")).to_have_attribute("data-status",
                                                                        "running")
        assert fits(page)
    finally:
        page.context.close()
    assert problems == []


def fits(page: Page) -> bool:
    """Nothing is wider than the viewport, so the page never scrolls sideways."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
