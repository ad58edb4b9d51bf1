"""A rule that raises, seen by a user of the map: a real analyzer run with one
failing rule (tests/failing_rule.py) over the test Redis the map is served
from, and the status bar in Debian's Chromium names the rule, how often it
raised and its error, as text.
"""

from __future__ import annotations

import pytest

from tests.browser.test_map import (  # noqa: F401 - browser, page, server: fixtures
    browser,
    log_in,
    page,
    server,
    settled,
    shot,
)
from tests.failing_rule import ERROR_LINE, RULE, failures_logged, run_failing_analyzer

pytestmark = pytest.mark.browser

BAR = "#statusbar .rule-failures"


def test_a_failing_rule_shows_in_the_status_bar_as_text(page, redis_server,  # noqa: F811
                                                        tmp_path):
    log_in(page, "/?level=container")
    assert page.locator(BAR).is_hidden()  # nothing failed yet

    analyzer = run_failing_analyzer(redis_server.url, redis_server.url,
                                    tmp_path / "var", "test_rule_failures-browser")
    count = len(failures_logged(analyzer))
    assert count, f"the check never raised: {analyzer.describe()}"

    # The page polls every 5 s: a generous wait for the count to show.
    page.wait_for_function(
        """([selector, phrase]) => {
            const bar = document.querySelector(selector);
            return !!bar && !bar.hidden && bar.textContent.includes(phrase);
        }""",
        arg=[BAR, f"{RULE} raised {count} times"], timeout=30_000)
    bar = page.locator(BAR)
    text = bar.text_content()
    assert text.startswith(f"rule failing: {RULE} raised {count} times, last at "), text
    # The error's one line, markup included, as text: no element came of it.
    assert text.endswith(f": {ERROR_LINE}"), text
    assert bar.get_attribute("data-count") == "1"
    assert "failing" in bar.get_attribute("class").split()
    assert page.locator("#statusbar img").count() == 0
    settled(page)
    assert page.dialogs == []
    shot(page, "map-rule-failure.png")
