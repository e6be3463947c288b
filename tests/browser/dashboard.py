"""Drives hookwise's dashboard in Debian's headless Chromium with Playwright.

Run by tests/api/dashboard.rs against a server it fed; prints a JSON report
of what the page showed on stdout (the Rust test asserts on it) and saves
screenshots. Every wait is for a state of the page (Playwright's waits with a
time limit), never a fixed sleep.
"""

import argparse
import hashlib
import hmac
import json
import re
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

WAIT_MS = 20_000


def deliver_ping(url: str, secret: str, delivery: str) -> None:
    """A signed delivery made while the page is open (the page must show it without a reload)."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 42}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{url}/integration/github/events",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "x-github-event": "ping",
            "x-github-delivery": delivery,
            "x-github-hook-id": "42",
            "x-hub-signature-256": signature,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"the live delivery was answered {response.status}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--wrong-token", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--deliveries", required=True, help="comma-separated delivery ids the page must list")
    parser.add_argument("--trigger", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--audit-kind", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    url = args.url.rstrip("/")
    report: dict = {"console_errors": []}

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium,
            headless=True,
            # As root (CI) Chromium's sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: report["console_errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: report["console_errors"].append(f"page error: {e}"))
        try:
            drive(page, args, out, url, report)
        except Exception:
            # What the page showed when a wait ran out, for the test's failure message.
            print(f"report so far: {json.dumps(report)}", file=sys.stderr)
            print(f"page {page.url}:\n{page.inner_text('body')[:3000]}", file=sys.stderr)
            page.screenshot(path=str(out / "dashboard-failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def drive(page, args, out: Path, url: str, report: dict) -> None:
    # Without a token the API answers 401 and the page asks for one.
    page.goto(f"{url}/")
    page.wait_for_selector("#token-panel:not([hidden])")
    page.wait_for_selector("#needs-token")

    page.fill("#token-input", args.wrong_token)
    page.click("#token-form button[type=submit]")
    # Locators and expect() rather than wait_for_function: the page's CSP forbids
    # the eval that a JavaScript-string predicate needs.
    page.locator("#token-message", has_text="did not accept").wait_for()
    report["wrong_token_refused"] = page.is_visible("#token-message") and not page.is_visible("#deliveries")
    report["wrong_token_stored"] = page.evaluate("sessionStorage.getItem('hookwise.api-token')")
    # The 401s so far were asked for (no token, then a wrong one); Chromium
    # logs each as a failed resource load. Any other error stays.
    report["console_errors"] = [e for e in report["console_errors"] if "status of 401" not in e]

    page.fill("#token-input", args.token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#deliveries tr[data-delivery]")
    report["token_in_session_storage"] = page.evaluate("sessionStorage.getItem('hookwise.api-token')") == args.token
    report["token_in_local_storage"] = page.evaluate("localStorage.length") > 0

    wanted = [d for d in args.deliveries.split(",") if d]
    for delivery in wanted:
        page.wait_for_selector(f'#deliveries tr[data-delivery="{delivery}"]')
    # Live: a delivery after the page loaded appears without a reload.
    deliver_ping(url, args.webhook_secret, "live-ping")
    page.wait_for_selector('#deliveries tr[data-delivery="live-ping"]')
    report["deliveries_listed"] = page.eval_on_selector_all(
        "#deliveries tr[data-delivery]", "rows => rows.map(r => r.dataset.delivery)"
    )

    # Locators, not element handles: the overview redraws itself every few seconds.
    row = page.locator(f'#conversations tr[data-trigger="{args.trigger}"]')
    row.wait_for()
    report["conversation_row_status"] = row.get_attribute("data-status")
    report["conversation_links"] = row.locator("a[target=_blank]").evaluate_all("links => links.map(a => a.href)")
    report["chart_elements"] = page.eval_on_selector_all(
        "#pr-chart rect.bar, #pr-chart circle.point", "els => els.length"
    )
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)

    row.locator("a.conversation-link").click()
    page.wait_for_selector("#conversation[data-status]")
    report["conversation_hash"] = page.evaluate("location.hash")
    report["conversation_page_status"] = page.get_attribute("#conversation", "data-status")
    page.screenshot(path=str(out / "dashboard-conversation.png"), full_page=True)

    # A deep link opened afresh (the token is in this tab's session).
    page.goto("about:blank")
    page.goto(f"{url}/#/conversations/{args.trigger}")
    page.wait_for_selector("#conversation[data-status]")
    report["conversation_deep_link_status"] = page.get_attribute("#conversation", "data-status")

    page.goto(f"{url}/#/audit")
    page.wait_for_selector("#audit tr[data-kind]")
    report["audit_kinds_before"] = page.eval_on_selector_all(
        "#audit tr[data-kind]", "rows => rows.map(r => r.dataset.kind)"
    )
    page.fill("#audit-filters input[name=kind]", args.audit_kind)
    page.click("#audit-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/audit\?kind=" + re.escape(args.audit_kind) + "$"), timeout=WAIT_MS)
    expect(page.locator(f'#audit tr[data-kind]:not([data-kind="{args.audit_kind}"])')).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f'#audit tr[data-kind="{args.audit_kind}"]').first).to_be_visible(timeout=WAIT_MS)
    report["audit_hash"] = page.evaluate("location.hash")
    page.screenshot(path=str(out / "dashboard-audit.png"), full_page=True)
    report["audit_kinds_after"] = page.eval_on_selector_all(
        "#audit tr[data-kind]", "rows => rows.map(r => r.dataset.kind)"
    )

    # A phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/#/")
    page.wait_for_selector(f'#conversations tr[data-trigger="{args.trigger}"]')
    page.wait_for_selector("#pr-chart")
    report["phone_overflow_px"] = page.evaluate(
        "Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth)"
    )
    page.screenshot(path=str(out / "dashboard-phone.png"))


if __name__ == "__main__":
    sys.exit(main())
