"""The portal in a real browser: Debian's headless Chromium, driven by selenium
through the system's chromedriver (nothing is downloaded).

Walks what a new user does, asserting each step:
sign up, sign out, sign in, create a key (read from the page, shown once, the
copy button works under the CSP), use it on the data plane (200, and a refused
403), see the requests in the key's usage (counts and the SVG charts), regenerate
(the old key 401, the new one 200), revoke (then 401), sign out (the old session
cookie no longer works). Screenshots of the keys page and the key detail page go
to SCREENSHOT_DIR.

usage: portal_flow.py BASE_URL SCREENSHOT_DIR
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
PORTAL = BASE + "/portal"
EMAIL, PASSWORD = "ada@example.com", "correct horse battery"


def step(name):
    print(f"step: {name}", flush=True)


def http(path, key=None, method="GET", cookie=None):
    """Status of a request made outside the browser."""
    req = urllib.request.Request(BASE + path, method=method)
    if key:
        req.add_header("X-API-Key", key)
    if cookie:
        req.add_header("Cookie", cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("KEYGATE_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("KEYGATE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def button(d, label):
    for b in d.find_elements(By.TAG_NAME, "button"):
        if b.text.strip() == label:
            return b
    raise AssertionError(f"no button {label!r} on {d.current_url}")


def gone(old):
    """True once `old` belongs to a page that is no longer shown. Chromium reports
    that as a stale element or, mid-navigation, as an inspector error."""
    def check(_):
        try:
            old.is_enabled()
            return False
        except WebDriverException:
            return True
    return check


def submit(d, label):
    """Clicks the button labelled `label` and waits for the next page to load."""
    old = d.find_element(By.TAG_NAME, "html")
    button(d, label).click()
    WebDriverWait(d, 10).until(gone(old))


def text_of(d):
    return d.find_element(By.TAG_NAME, "body").text


def fill(d, name, value):
    el = d.find_element(By.NAME, name)
    el.clear()
    el.send_keys(value)


def wait_url(d, suffix):
    WebDriverWait(d, 10).until(lambda d: d.current_url.split("?")[0].endswith(suffix))


def new_key_from_page(d):
    assert "will not be shown again" in text_of(d), text_of(d)
    key = d.find_element(By.ID, "new-key").get_attribute("value")
    assert re.fullmatch(r"kg_sk_(live|test)_[0-9A-Za-z]{38}", key), key
    return key


def full_page_screenshot(d, name):
    """A screenshot of the whole page: the window is made as tall as the page."""
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1280, max(800, height + 20))
    d.save_screenshot(os.path.join(SHOTS, name))
    d.set_window_size(1280, 1000)


# Every console entry of the run, kept as it is read (reading the log drains it).
CONSOLE = []


def console(d):
    CONSOLE.extend(d.get_log("browser"))
    return CONSOLE


def csp_violations(d):
    return [e["message"] for e in console(d)
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def console_errors(d):
    """Every console error of the run (a failed request, a script error, ...) but
    the ones a step expected."""
    return [e["message"] for e in console(d)
            if e.get("level") == "SEVERE" and not e.get("expected")]


def expect_console_error(d, text):
    """A step that provokes a refusal (a wrong password answered 401) leaves one
    console error: it must be there, and it is not counted against the page."""
    entries = [e for e in console(d) if e.get("level") == "SEVERE" and not e.get("expected")]
    assert any(text in e["message"] for e in entries), entries
    for e in entries:
        if text in e["message"]:
            e["expected"] = True


def layout(d, name):
    """The current page at 390 px and 1280 px wide and in dark mode: the document
    never scrolls sideways (a wide table scrolls inside its own box), and a
    screenshot of each is kept as NAME-390.png, NAME-1280.png, NAME-dark.png."""
    for width in (390, 1280):
        d.set_window_size(width, 900)
        over = d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert over <= 0, f"{name} at {width} px: the page is {over} px wider than the window"
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(width, max(600, height + 20))
        d.save_screenshot(os.path.join(SHOTS, f"{name}-{width}.png"))
    d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                      {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        d.set_window_size(1280, 900)
        background = d.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(20, 23, 27)", f"{name}: not dark in dark mode: {background}"
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1280, max(600, height + 20))
        d.save_screenshot(os.path.join(SHOTS, f"{name}-dark.png"))
    finally:
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        d.set_window_size(1280, 1000)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    d = browser()
    try:
        step("sign up")
        d.get(PORTAL + "/login")
        layout(d, "login")
        d.get(PORTAL + "/signup")
        fill(d, "email", EMAIL)
        fill(d, "name", "Ada")
        fill(d, "password", PASSWORD)
        submit(d, "Create account")
        wait_url(d, "/portal/keys")
        assert EMAIL in text_of(d)

        step("sign out, then sign in")
        submit(d, "Sign out")
        wait_url(d, "/portal/login")
        fill(d, "email", EMAIL)
        fill(d, "password", "wrong password!")
        submit(d, "Sign in")
        assert "Invalid email or password" in text_of(d)
        expect_console_error(d, "/portal/login - Failed to load resource: the server responded with a status of 401")
        fill(d, "email", EMAIL)
        fill(d, "password", PASSWORD)
        submit(d, "Sign in")
        wait_url(d, "/portal/keys")

        step("create a key")
        fill(d, "name", "Production server")
        Select(d.find_element(By.NAME, "environment")).select_by_value("live")
        d.find_element(By.CSS_SELECTOR, 'input[name="scopes"][value="search"]').click()
        submit(d, "Create key")
        key = new_key_from_page(d)
        curl = d.find_element(By.CSS_SELECTOR, "section.try pre code").text
        assert curl == f"curl -i -H 'x-api-key: {key}' {BASE}/", curl
        layout(d, "new-key")
        button(d, "Copy").click()
        WebDriverWait(d, 5).until(lambda d: button_text(d, "Copied"))
        assert not csp_violations(d), csp_violations(d)

        step("the key works on the data plane")
        for _ in range(3):
            status, headers = http("/hello", key)
            assert status == 200, status
        status, _ = http("/api/search", key, method="POST")
        assert status == 200, status
        # A route needing a scope the key lacks: refused, and counted as failed.
        status, _ = http("/api/admin", key)
        assert status == 403, status

        step("the requests appear in the key's usage")
        d.get(PORTAL + "/keys")
        assert key not in d.page_source, "the whole key is shown only once"
        old = d.find_element(By.TAG_NAME, "html")
        d.find_element(By.LINK_TEXT, "Production server").click()
        WebDriverWait(d, 10).until(gone(old))
        page = text_of(d)
        row = d.find_element(By.XPATH, "//table[@class='totals']//tr[th='Last 24 hours']")
        counts = [c.text for c in row.find_elements(By.TAG_NAME, "td")][:3]
        assert counts == ["5", "4", "1\n1 refused by the gateway"], counts
        charts = d.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 2, len(charts)
        bars = charts[0].find_elements(By.CSS_SELECTOR, "g.bar")
        assert len(bars) == 24 and len(charts[1].find_elements(By.CSS_SELECTOR, "g.bar")) == 30
        titles = [t.get_attribute("textContent") for t in charts[0].find_elements(By.CSS_SELECTOR, "g.bar > title")]
        assert any(t.endswith("UTC: 4 successful, 1 refused by the gateway") for t in titles), titles
        endpoints = [r.find_element(By.TAG_NAME, "code").text
                     for r in d.find_elements(By.CSS_SELECTOR, "table.endpoints tbody tr")]
        assert endpoints == ["/hello", "/api/admin", "/api/search"], endpoints
        day = d.find_element(By.XPATH, "//table[@class='limits']//tr[td='day']")
        limit, remaining = (int(c.text) for c in day.find_elements(By.TAG_NAME, "td")[1:3])
        assert limit == 1000 and remaining < limit, (limit, remaining)
        assert "Credits remaining" in page
        assert key not in d.page_source
        full_page_screenshot(d, "portal-key-detail.png")
        layout(d, "key-detail")

        step("regenerate")
        submit(d, "Regenerate")
        wait_url(d, "/regenerate")
        submit(d, "Regenerate key")
        new = new_key_from_page(d)
        assert new != key
        assert http("/hello", key)[0] == 401, "the old secret stopped at once"
        assert http("/hello", new)[0] == 200

        step("keys page screenshot")
        d.get(PORTAL + "/keys")
        fill(d, "name", "CI pipeline")
        Select(d.find_element(By.NAME, "environment")).select_by_value("test")
        submit(d, "Create key")
        new_key_from_page(d)
        d.get(PORTAL + "/keys")
        full_page_screenshot(d, "portal-keys.png")
        layout(d, "keys")

        step("revoke")
        row = d.find_element(By.XPATH, "//tr[td/a='Production server']")
        old = d.find_element(By.TAG_NAME, "html")
        next(b for b in row.find_elements(By.TAG_NAME, "button") if b.text == "Revoke").click()
        WebDriverWait(d, 10).until(gone(old))
        wait_url(d, "/revoke")
        submit(d, "Revoke key")
        wait_url(d, "/portal/keys")
        assert "Key revoked" in d.find_element(By.CSS_SELECTOR, "p.notice").text, text_of(d)
        row = d.find_element(By.XPATH, "//tr[td/a='Production server']")
        assert "revoked" in row.text, row.text
        assert http("/hello", new)[0] == 401, "a revoked key is refused"

        step("sign out ends the session")
        cookie = d.get_cookie("kg_session")
        assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
        session = f"kg_session={cookie['value']}"
        assert http("/portal/keys", cookie=session)[0] == 200
        submit(d, "Sign out")
        wait_url(d, "/portal/login")
        assert d.find_element(By.CSS_SELECTOR, "p.notice").text == "You are signed out."
        status, headers = http("/portal/keys", cookie=session)
        assert status == 303 and headers.get("Location", "").endswith("/portal/login"), (status, headers)
        assert not csp_violations(d), csp_violations(d)
        assert not console_errors(d), console_errors(d)
        print(json.dumps({"ok": True, "screenshots": sorted(os.listdir(SHOTS))}))
    except Exception:
        d.save_screenshot(os.path.join(SHOTS, "portal-failure.png"))
        print("page at failure:", d.current_url, "\n", text_of(d)[:2000], file=sys.stderr)
        raise
    finally:
        d.quit()


def button_text(d, label):
    return any(b.text.strip() == label for b in d.find_elements(By.TAG_NAME, "button"))


if __name__ == "__main__":
    main()
