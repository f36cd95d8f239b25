"""The portal's account pages in a real browser (Debian's headless Chromium through
the system's chromedriver; nothing is downloaded).

A customer signs up, makes two keys and uses them; their account page shows the
plan, the windows shared by both keys, the pooled credit balance, and the usage of
all keys together with each key's share. An admin finds the account by email,
changes its plan, adds credits and suspends it (the customer's keys are refused at
once), then resumes it. Screenshots go to SCREENSHOT_DIR.

usage: accounts_flow.py BASE_URL SCREENSHOT_DIR ADMIN_EMAIL ADMIN_PASSWORD
"""

import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from portal_flow import (  # noqa: E402
    browser, console_errors, csp_violations, fill, full_page_screenshot, gone, http, layout,
    new_key_from_page,
    step, submit, text_of, wait_url,
)

BASE, SHOTS, ADMIN, ADMIN_PASSWORD = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], sys.argv[4]
PORTAL = BASE + "/portal"
EMAIL, PASSWORD = "grace@example.com", "a long enough password"


def sign_in(d, email, password):
    d.get(PORTAL + "/login")
    fill(d, "email", email)
    fill(d, "password", password)
    submit(d, "Sign in")
    wait_url(d, "/portal/keys")


def fact(d, cls):
    return d.find_element(By.CSS_SELECTOR, f"dd.{cls}").text.strip()


def notice(d):
    """The note the page shows after an action ('' when none)."""
    found = d.find_elements(By.CSS_SELECTOR, "p.notice")
    return found[0].text if found else ""


def main():
    os.makedirs(SHOTS, exist_ok=True)
    d = browser()
    try:
        step("a customer signs up and makes two keys")
        d.get(PORTAL + "/signup")
        fill(d, "email", EMAIL)
        fill(d, "name", "Grace")
        fill(d, "password", PASSWORD)
        submit(d, "Create account")
        wait_url(d, "/portal/keys")
        keys = []
        for name in ("Laptop", "Server"):
            fill(d, "name", name)
            submit(d, "Create key")
            keys.append(new_key_from_page(d))
            d.get(PORTAL + "/keys")

        step("both keys spend the account's credits")
        for _ in range(3):
            assert http("/paid", keys[0])[0] == 200
        assert http("/paid", keys[1])[0] == 200

        step("the account page: plan, shared windows, balance, each key's share")
        d.get(PORTAL + "/account")
        assert fact(d, "plan") == "free", fact(d, "plan")
        assert fact(d, "balance") == "46", fact(d, "balance")
        assert "Shared by every key of the account" in text_of(d)
        minute = d.find_element(By.XPATH, "//table[contains(@class,'limits')]//tr[td='minute']")
        cells = [c.text for c in minute.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == "100" and cells[2] == "96", cells
        assert d.find_element(By.CSS_SELECTOR, "strong.account-total").text == "4"
        rows = d.find_elements(By.CSS_SELECTOR, "table.per-key tbody tr")
        shares = {r.find_element(By.TAG_NAME, "a").text: r.find_element(By.CSS_SELECTOR, "td.requests").text
                  for r in rows}
        assert shares == {"Laptop": "3", "Server": "1"}, shares
        assert "Change plan" not in text_of(d), "customers change nothing here"
        full_page_screenshot(d, "portal-account.png")
        layout(d, "account")
        status, _ = http("/portal/accounts", cookie=f"kg_session={d.get_cookie('kg_session')['value']}")
        assert status == 404, f"a customer has no account list: {status}"
        submit(d, "Sign out")

        step("an admin finds the account by email")
        sign_in(d, ADMIN, ADMIN_PASSWORD)
        d.get(PORTAL + "/accounts")
        fill(d, "email", EMAIL)
        submit(d, "Search")
        rows = d.find_elements(By.CSS_SELECTOR, "table.accounts tbody tr")
        assert len(rows) == 1 and EMAIL in rows[0].text, [r.text for r in rows]
        old = d.find_element(By.TAG_NAME, "html")
        rows[0].find_element(By.TAG_NAME, "a").click()
        WebDriverWait(d, 10).until(gone(old))

        step("the admin changes the plan and adds credits")
        Select(d.find_element(By.NAME, "plan")).select_by_value("pro")
        submit(d, "Change plan")
        assert fact(d, "plan") == "pro", fact(d, "plan")
        assert notice(d).startswith("Plan changed"), notice(d)
        fill(d, "add", "500")
        submit(d, "Add credits")
        assert fact(d, "balance") == "546", fact(d, "balance")
        assert notice(d).startswith("Credits added"), notice(d)
        minute = d.find_element(By.XPATH, "//table[contains(@class,'limits')]//tr[td='minute']")
        assert minute.find_elements(By.TAG_NAME, "td")[1].text == "1000"
        full_page_screenshot(d, "portal-account-admin.png")
        layout(d, "account-admin")

        step("suspending refuses every key at once; resuming lets them work")
        submit(d, "Suspend")
        assert "suspended" in d.find_element(By.CSS_SELECTOR, ".account-status").text
        assert notice(d).startswith("Account suspended"), notice(d)
        for k in keys:
            assert http("/paid", k)[0] == 403
        submit(d, "Resume")
        assert notice(d).startswith("Account resumed"), notice(d)
        for k in keys:
            assert http("/paid", k)[0] == 200
        assert not csp_violations(d), csp_violations(d)
        assert not console_errors(d), console_errors(d)
        print(json.dumps({"ok": True, "screenshots": sorted(os.listdir(SHOTS))}))
    except Exception:
        d.save_screenshot(os.path.join(SHOTS, "accounts-failure.png"))
        print("page at failure:", d.current_url, "\n", text_of(d)[:2000], file=sys.stderr)
        raise
    finally:
        d.quit()


if __name__ == "__main__":
    main()
