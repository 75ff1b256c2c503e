#!/usr/bin/env python3
"""Drive the Berth portal in headless Chromium (Debian's chromium + chromium-driver, Selenium).

    browser.py --base http://127.0.0.1:PORT --user admin --password PW --shots DIR

Runs axe-core (accessibility rules) on every page it visits: no serious or critical
violation. Signs in through the form, checks the projects page, generates a CLI secret on the profile
page (printed as `secret <value>` for the caller to log in with), that the browser reported no Content-
Security-Policy violation or script error, that the skip link is the first thing the keyboard
reaches, and that the page fits a phone's width; saves screenshots (light and dark, desktop
and phone) into DIR. Prints "ok" and exits 0, or explains what failed and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def browser(dark: bool = False, width: int = 1280, height: int = 860) -> webdriver.Chrome:
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--force-device-scale-factor=1"]:
        o.add_argument(a)
    if dark:
        o.add_argument("--force-dark-mode")
        o.add_argument("--blink-settings=preferredColorScheme=0")
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def fail(msg: str) -> None:
    print(msg)
    sys.exit(1)


def sign_in(d: webdriver.Chrome, base: str, user: str, password: str) -> None:
    d.get(base + "/")
    if "/account/sign-in" not in d.current_url:
        fail(f"/ did not lead to the sign-in page but to {d.current_url}")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(password + Keys.ENTER)
    settle(d, lambda: "/account/sign-in" not in d.current_url)
    if not d.current_url.endswith("/harbor/projects"):
        fail(f"signing in led to {d.current_url}: {d.find_element(By.TAG_NAME, 'main').text}")


def settle(d: webdriver.Chrome, done) -> None:
    """Wait (10 s at most) until a navigation the page started has happened."""
    try:
        WebDriverWait(d, 10).until(lambda _: done() and d.execute_script("return document.readyState") == "complete")
    except Exception:
        pass  # the caller says what it expected


AXE = ""


def accessible(d: webdriver.Chrome, page: str) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    d.execute_script(AXE)
    result = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));"
    )
    if isinstance(result, str):
        fail(f"axe-core failed on {page}: {result}")
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][0]['target']}"
           for v in result if v.get("impact") in ("serious", "critical")]
    if bad:
        fail(f"accessibility violations on {page}: " + "; ".join(bad))


def problems(d: webdriver.Chrome, base: str = "") -> list[str]:
    """What the browser logged as a warning or error (another site's, such as the identity
    provider's missing favicon, is not Berth's concern)."""
    found = [e["message"] for e in d.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    return [m for m in found if not base or not m.startswith("http") or m.startswith(base)]


def cli_secret(d: webdriver.Chrome, user: str) -> str:
    """Generate a CLI secret on the profile page (reached from the top bar); returns it."""
    d.find_element(By.CSS_SELECTOR, "header .who a").click()
    settle(d, lambda: d.current_url.endswith("/harbor/profile"))
    d.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Generate')]").click()
    settle(d, lambda: bool(d.find_elements(By.ID, "cli-secret")))
    found = d.find_elements(By.ID, "cli-secret")
    if not found:
        fail("generating a CLI secret showed none: " + d.find_element(By.TAG_NAME, "main").text)
    login = d.find_element(By.CSS_SELECTOR, ".notice pre").text
    if f"-u {user}" not in login or "docker login" not in login:
        fail(f"the login instructions read {login!r}")
    return found[0].text


def oidc_journey(a: argparse.Namespace) -> None:
    """First sign-in through the identity provider: the SSO button, the provider's form,
    choosing a username, the projects page, a CLI secret (printed as `secret ...`)."""
    d = browser()
    try:
        d.get(a.base + "/account/sign-in")
        d.find_element(By.LINK_TEXT, "Sign in with your organisation (SSO)").click()
        settle(d, lambda: "/login/" in d.current_url)
        d.find_element(By.NAME, "username").send_keys(a.oidc_user)
        d.find_element(By.NAME, "password").send_keys(a.oidc_password + Keys.ENTER)
        settle(d, lambda: "/account/onboard" in d.current_url)
        if "/account/onboard" not in d.current_url:
            fail(f"the provider's sign-in led to {d.current_url}: {d.find_element(By.TAG_NAME, 'body').text}")
        accessible(d, "onboarding")
        d.save_screenshot(os.path.join(a.shots, "onboard.png"))
        field = d.find_element(By.ID, "username")
        if field.get_attribute("value") != a.oidc_user:
            fail(f"the proposed username is {field.get_attribute('value')!r}")
        field.clear()
        field.send_keys(a.choose + Keys.ENTER)
        settle(d, lambda: d.current_url.endswith("/harbor/projects"))
        who = d.find_element(By.CSS_SELECTOR, "header .who strong").text
        if who != a.choose:
            fail(f"after onboarding the top bar says {who!r}")
        print(f"secret {cli_secret(d, a.choose)}")
        bad = problems(d, a.base)
        if bad:
            fail("the browser reported: " + "; ".join(bad))
    finally:
        d.quit()
    print("ok")


def visit_journey(a: argparse.Namespace) -> None:
    """Sign in, then visit each of --visit's pages: axe-core finds no serious violation, and
    no markup that users typed became live — no element or handler from a payload, no script
    that is not the portal's own, no script run (`window.__xss`), no CSP violation. In the
    light theme, then the dark one."""
    for dark, width in ((False, 1280), (True, 1280), (False, 390)):
        visit_pages(a, dark, width)
    print("ok")


def visit_pages(a: argparse.Namespace, dark: bool, width: int) -> None:
    d = browser(dark=dark, width=width)
    try:
        sign_in(d, a.base, a.user, a.password)
        for path in a.visit:
            d.get(a.base + path)
            settle(d, lambda: True)
            overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 0:
                wide = d.execute_script(
                    "return [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
                    " > window.innerWidth + 1).slice(-3).map(e => e.tagName + '.' + e.className + ': '"
                    " + e.textContent.slice(0, 60))")
                fail(f"{path} at {width} px is {overflow} px wider than the screen: {wide}")
            live = d.execute_script(
                "return [...document.querySelectorAll('img[src=\"x\"], script:not([src]), svg script,"
                " iframe, object, embed, [onerror], [onload], [onclick], [onmouseover], a[href^=\"javascript\"]')]"
                ".map(e => e.outerHTML.slice(0, 120))"
            )
            if live:
                fail(f"{path}: markup from user input is live: {live}")
            if d.execute_script("return window.__xss !== undefined"):
                fail(f"{path}: a payload ran")
            accessible(d, path + (" (dark)" if dark else "") + (f" at {width} px" if width < 1000 else ""))
            if a.expect_text and a.expect_text not in d.find_element(By.TAG_NAME, "body").text and path in a.shows:
                fail(f"{path}: the payload is not shown as text")
        bad = problems(d, a.base)
        if bad:
            fail("the browser reported: " + "; ".join(bad))
    finally:
        d.quit()


def navigate(d: webdriver.Chrome, element) -> None:
    """Click `element` and wait (10 s at most) until the page it leads to has loaded."""
    from selenium.webdriver.support import expected_conditions
    old = d.find_element(By.TAG_NAME, "html")
    element.click()
    try:
        WebDriverWait(d, 10).until(expected_conditions.staleness_of(old))
    except Exception:
        pass  # the caller says what it expected
    settle(d, lambda: True)


def click(d: webdriver.Chrome, text: str) -> None:
    """Press the button or follow the link whose text is `text`, and wait for the next page."""
    navigate(d, d.find_element(By.XPATH, f"//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']"))


def says(d: webdriver.Chrome, text: str, where: str) -> None:
    main = d.find_element(By.TAG_NAME, "main").text
    if text not in main:
        fail(f"{where}: the page does not say {text!r}: {main[:1500]}")


def type_into(d: webdriver.Chrome, field: str, text: str) -> None:
    e = d.find_element(By.ID, field)
    e.clear()
    e.send_keys(text)


def journeys(a: argparse.Namespace) -> None:
    """The portal's journeys, as a user goes through them, on project --project (which holds
    an image): a new project; a member added and their role changed; an immutability rule;
    a retention rule previewed, then added; the project made public; its logs; a webhook
    created, tested and its history opened; a repository's
    lifecycle policy previewed and a bad access policy explained; then, as administrator, a
    user created, a garbage collection dry run and the system allowlist saved."""
    d = browser()
    try:
        sign_in(d, a.base, a.user, a.password)
        type_into(d, "project-name", "climate-models")
        type_into(d, "limit", "5")
        click(d, "Create project")
        if d.find_element(By.TAG_NAME, "h1").text.split()[0] != "climate-models":
            fail(f"creating a project led to {d.current_url}")
        d.get(a.base + "/harbor/projects?q=" + a.project)
        navigate(d, d.find_element(By.LINK_TEXT, a.project))
        project = d.current_url.rsplit("/", 1)[0]
        # Members: add una as a developer, then make her a guest.
        click(d, "Members")
        type_into(d, "member-name", "una")
        click(d, "Add")
        row = d.find_element(By.XPATH, "//tr[td[normalize-space()='una']]")
        from selenium.webdriver.support.ui import Select
        Select(row.find_element(By.TAG_NAME, "select")).select_by_visible_text("Guest")
        navigate(d, row.find_element(By.XPATH, ".//button[normalize-space()='Change']"))
        row = d.find_element(By.XPATH, "//tr[td[normalize-space()='una']]")
        if Select(row.find_element(By.TAG_NAME, "select")).first_selected_option.text != "Guest":
            fail("una's role did not change to Guest")
        # Policy: an immutability rule; a retention rule, previewed first.
        click(d, "Policy")
        type_into(d, "im-tags", "v1")
        navigate(d, d.find_element(By.XPATH, "//form[contains(@action, '/policy/immutable')]//button"))
        says(d, "enabled", "after adding an immutability rule")
        Select(d.find_element(By.ID, "rt-template")).select_by_value("latestPushedK")
        type_into(d, "rt-count", "1")
        click(d, "Preview")
        says(d, "would be deleted", "the retention preview")
        says(d, "Evaluated now, not saved: nothing was deleted.", "the retention preview")
        accessible(d, "retention preview")
        d.set_window_size(1280, 2000)
        d.save_screenshot(os.path.join(a.shots, "policy.png"))
        d.set_window_size(1280, 860)
        navigate(d, d.find_element(By.XPATH, "//button[@value='add']"))
        says(d, "Rule added.", "adding the retention rule")
        # Configuration: make the project public.
        click(d, "Configuration")
        box = d.find_element(By.NAME, "public")
        if not box.is_selected():
            box.click()
        click(d, "Save")
        says(d, "Saved.", "saving the configuration")
        # Logs: what happened, filtered to pushes.
        click(d, "Logs")
        Select(d.find_element(By.ID, "f-op")).select_by_value("push")
        click(d, "Filter")
        says(d, "push", "the project's logs")
        # Webhooks: a receiver for pushes and deletions, its signing secret shown once; a test
        # event that cannot reach it says why; its (empty) delivery history.
        click(d, "Webhooks")
        type_into(d, "wh-name", "ci-builds")
        type_into(d, "wh-address", "https://hooks.invalid/berth")
        Select(d.find_element(By.ID, "wh-format")).select_by_value("CloudEvents")
        d.find_element(By.XPATH, "//input[@name='event' and @value='DELETE_ARTIFACT']").click()
        click(d, "Create")
        says(d, "Created ci-builds. Its signing secret, shown this once", "creating a webhook")
        accessible(d, "webhooks")
        d.save_screenshot(os.path.join(a.shots, "webhooks.png"))
        navigate(d, d.find_element(By.XPATH, "//button[@aria-label='Test ci-builds']"))
        says(d, "Test event of ci-builds: https://hooks.invalid/berth:", "testing a webhook")
        navigate(d, d.find_element(By.LINK_TEXT, "ci-builds"))
        says(d, "No deliveries.", "a new webhook's history")
        accessible(d, "webhook history")
        # A repository's policies: a lifecycle preview; a bad access policy explained.
        d.get(project + "/repositories")
        navigate(d, d.find_element(By.CSS_SELECTOR, "tbody td a"))
        click(d, "Policies")
        type_into(d, "lifecycle", '{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", '
                  '"countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}')
        click(d, "Preview")
        says(d, "images would expire", "the lifecycle preview")
        bad = problems(d, a.base)
        if bad:
            fail("the browser reported: " + "; ".join(bad))
        type_into(d, "access", '{"Statement": "nope"}')
        navigate(d, d.find_element(By.XPATH, "//button[@value='save-access']"))
        says(d, "The policy is not valid", "a bad access policy")
        d.get_log("browser")  # the 400 of that page, as intended
        accessible(d, "repository policies")
        # Administration: a user, a garbage collection dry run, the system allowlist.
        click(d, "Administration")
        type_into(d, "nu-name", "vera")
        type_into(d, "nu-pw", "Vera-Passw0rd-1")
        click(d, "Create user")
        says(d, "User vera created.", "creating a user")
        click(d, "Garbage collection")
        click(d, "Dry run")
        says(d, "started", "a garbage collection dry run")
        click(d, "Settings")
        type_into(d, "cves", "CVE-2024-3094")
        click(d, "Save")
        says(d, "names 1 vulnerabilities", "the system allowlist")
        bad = problems(d, a.base)
        if bad:
            fail("the browser reported: " + "; ".join(bad))
    finally:
        d.quit()
    print("ok")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--shots", required=True)
    ap.add_argument("--axe", default="/usr/local/share/berth-ci/axe.min.js")
    ap.add_argument("--oidc-user", help="sign in through the identity provider as this user instead")
    ap.add_argument("--oidc-password")
    ap.add_argument("--choose", help="the username to choose when onboarding")
    ap.add_argument("--journeys", action="store_true", help="go through the portal's journeys instead")
    ap.add_argument("--project", default="research-genomics", help="the project the journeys change")
    ap.add_argument("--scanned", help="the page of a scanned image, to check its findings and SBOM")
    ap.add_argument("--visit", nargs="*", default=[], help="sign in and check these pages for live markup instead")
    ap.add_argument("--shows", nargs="*", default=[], help="those of the pages that must show --expect-text")
    ap.add_argument("--expect-text", default="")
    a = ap.parse_args()
    global AXE
    with open(a.axe) as f:
        AXE = f.read()
    os.makedirs(a.shots, exist_ok=True)
    if a.oidc_user:
        oidc_journey(a)
        return
    if a.visit:
        visit_journey(a)
        return
    if a.journeys:
        journeys(a)
        return

    d = browser()
    try:
        d.get(a.base + "/account/sign-in")
        d.save_screenshot(os.path.join(a.shots, "sign-in.png"))
        accessible(d, "sign-in")
        if d.switch_to.active_element.get_attribute("id") != "username":
            fail("the sign-in page does not start in the username field")
        sign_in(d, a.base, a.user, a.password)
        d.save_screenshot(os.path.join(a.shots, "projects.png"))
        accessible(d, "projects")
        # The keyboard reaches the skip link first.
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = d.switch_to.active_element
        if focused.text != "Skip to content":
            fail(f"the first Tab stop is {focused.tag_name} {focused.text!r}, not the skip link")
        h1 = d.find_element(By.TAG_NAME, "h1").text
        if h1 != "Projects":
            fail(f"the projects page's heading is {h1!r}")
        names = [e.text for e in d.find_elements(By.CSS_SELECTOR, "tbody td strong")]
        if not names:
            fail("the projects page lists no project")
        # A project, its repositories, a repository's artifacts and the pull commands.
        if "library" in names:
            d.find_element(By.LINK_TEXT, "library").click()
            settle(d, lambda: d.current_url.endswith("/repositories"))
            d.save_screenshot(os.path.join(a.shots, "project.png"))
            accessible(d, "project")
            repos = [e.text for e in d.find_elements(By.CSS_SELECTOR, "tbody td a")]
            if "library/app" not in repos:
                fail(f"the library project lists {repos}")
            d.find_element(By.LINK_TEXT, "library/app").click()
            settle(d, lambda: "artifacts-tab" in d.current_url)
            page = d.find_element(By.TAG_NAME, "main").text
            if "v1" not in page or "docker pull " not in page or "/library/app:" not in page:
                fail("the repository page shows no v1 tag or pull command: " + page)
            d.save_screenshot(os.path.join(a.shots, "repository.png"))
            accessible(d, "repository")
            # The script's copy buttons: shown, and copying the command beside them.
            d.execute_cdp_cmd("Browser.grantPermissions", {"origin": a.base,
                              "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
            copy = d.find_element(By.CSS_SELECTOR, ".command button[data-copy]")
            if not copy.is_displayed():
                fail("the copy buttons are not shown: did the script run?")
            command = d.find_element(By.CSS_SELECTOR, ".command code").text
            copy.click()
            WebDriverWait(d, 5).until(lambda _: copy.text != "Copy")
            copied = d.execute_async_script(
                "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done(String(e)));")
            if copy.text != "Copied" or copied != command:
                fail(f"the copy button says {copy.text!r} and copied {copied!r}, not {command!r}")
            # Sortable columns: the header's button sorts and says how.
            size = d.find_element(By.XPATH, "//th[.//button[normalize-space()='Size']]")
            size.find_element(By.TAG_NAME, "button").click()
            if size.get_attribute("aria-sort") != "ascending":
                fail(f"sorting by size set aria-sort={size.get_attribute('aria-sort')!r}")
            d.find_element(By.CSS_SELECTOR, "tbody td a code").click()
            settle(d, lambda: "/artifacts/sha256:" in d.current_url)
            heads = [e.text for e in d.find_elements(By.TAG_NAME, "h2")]
            if heads != ["Layers", "Vulnerabilities", "Software bill of materials"]:
                fail(f"the artifact page's sections are {heads}")
            d.save_screenshot(os.path.join(a.shots, "artifact.png"))
            accessible(d, "artifact")
            # A robot account: created here, its Kubernetes Secret downloaded.
            d.find_element(By.LINK_TEXT, "library").click()
            settle(d, lambda: d.current_url.endswith("/repositories"))
            d.find_element(By.LINK_TEXT, "Robot accounts").click()
            settle(d, lambda: d.current_url.endswith("/robot-account"))
            d.find_element(By.ID, "robot-name").send_keys("ci-puller")
            d.find_element(By.ID, "robot-description").send_keys("pulls for CI")
            d.find_element(By.XPATH, "//button[normalize-space()='Create']").click()
            settle(d, lambda: bool(d.find_elements(By.ID, "robot-secret")))
            if not d.find_elements(By.ID, "robot-secret"):
                fail("creating a robot showed no secret: " + d.find_element(By.TAG_NAME, "main").text)
            d.save_screenshot(os.path.join(a.shots, "robot.png"))
            accessible(d, "robot")
            downloads = os.path.join(a.shots, "downloads")
            os.makedirs(downloads, exist_ok=True)
            d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
            ns = d.find_element(By.ID, "namespace")
            ns.clear()
            ns.send_keys("ci-jobs")
            d.find_element(By.XPATH, "//button[normalize-space()='Download Kubernetes Secret']").click()
            WebDriverWait(d, 10).until(lambda _: any(f.endswith(".yaml") for f in os.listdir(downloads)))
            yaml = [f for f in os.listdir(downloads) if f.endswith(".yaml")][0]
            print(f"k8s {os.path.join(downloads, yaml)}")
            d.get(a.base + "/harbor/projects")
        if a.scanned:
            # An image pushed by a real client, scanned: its findings and its SBOM's packages.
            d.get(a.base + a.scanned)
            rows = d.find_elements(By.CSS_SELECTOR, "#vulnerabilities + .panel tbody tr")
            if not rows or not rows[0].find_elements(By.CSS_SELECTOR, "span[class^='badge sev-']"):
                fail("the scanned image's page lists no finding: " + d.find_element(By.TAG_NAME, "main").text[:2000])
            summary = d.find_element(By.CSS_SELECTOR, "#sbom + .panel details summary").text
            if not summary.endswith("packages") or int(summary.split()[0]) < 50:
                fail(f"the SBOM section says {summary!r}")
            d.find_element(By.CSS_SELECTOR, "#sbom + .panel details summary").click()
            if "pkg:deb/debian/" not in d.find_element(By.CSS_SELECTOR, "#sbom + .panel details").text:
                fail("the SBOM's packages carry no Debian package URL")
            accessible(d, "scanned artifact")
            d.set_window_size(1280, 2400)
            d.save_screenshot(os.path.join(a.shots, "artifact-scanned.png"))
            d.set_window_size(1280, 860)
        bad = problems(d)
        if bad:
            fail("the browser reported: " + "; ".join(bad))
        # Administration: the job queue (the signed-in user is a system administrator).
        d.find_element(By.LINK_TEXT, "Administration").click()
        settle(d, lambda: "/harbor/users" in d.current_url)
        d.find_element(By.LINK_TEXT, "Jobs").click()
        settle(d, lambda: "/harbor/jobs" in d.current_url)
        if d.find_element(By.TAG_NAME, "h1").text != "Jobs" or not d.find_elements(By.CSS_SELECTOR, "tbody tr"):
            fail("the jobs page lists no job: " + d.find_element(By.TAG_NAME, "main").text)
        d.save_screenshot(os.path.join(a.shots, "jobs.png"))
        accessible(d, "jobs")
        # The profile: a CLI secret, shown once, for docker/podman/skopeo login.
        secret = cli_secret(d, a.user)
        d.save_screenshot(os.path.join(a.shots, "profile.png"))
        accessible(d, "profile")
        print(f"secret {secret}")
        d.get(a.base + "/harbor/profile")
        if d.find_elements(By.ID, "cli-secret"):
            fail("the CLI secret is shown again after a reload")
        # Sign out through the button.
        d.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
        settle(d, lambda: "/account/sign-in" in d.current_url)
        if "/account/sign-in" not in d.current_url:
            fail(f"signing out led to {d.current_url}")
    finally:
        d.quit()

    # Dark theme and a phone's width.
    for dark, width, name in [(True, 1280, "projects-dark.png"), (False, 390, "projects-phone.png")]:
        d = browser(dark=dark, width=width, height=844)
        try:
            sign_in(d, a.base, a.user, a.password)
            overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 0:
                fail(f"at {width} px the page is {overflow} px wider than the screen")
            d.save_screenshot(os.path.join(a.shots, name))
            accessible(d, name)
            bad = problems(d)
            if bad:
                fail("the browser reported: " + "; ".join(bad))
        finally:
            d.quit()
    print("ok")


if __name__ == "__main__":
    main()
