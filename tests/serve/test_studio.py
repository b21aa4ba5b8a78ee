"""The web studio in a real browser: Playwright driving Debian's Chromium (`.ci/run` installs it and
fonts-noto-cjk). One browser and one server for the module; the server also offers two fake
applications (a support assistant and a knowledge-answer one, `ChatApp`s under the server's guard),
so the panels are tested without the applications' own code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from luoxia.apps.interface import AppReply, Citation, last_user_message, record_handoff, turn_guard
from luoxia.retrieval.interface import Hit
from luoxia.serve.store import Store
from tests.serve.browser import REQUIRED, needs_browser, screenshot
from tests.serve.conftest import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio_server(settings_for):
    """The tiny chat and image models, and two fake applications under the server's guard."""
    from luoxia.serve.models import load_models

    settings = settings_for()
    models = load_models(settings)
    models.apps.update({"helpdesk": FakeSupport("helpdesk", models.guard), "atlas": FakeAsk()})
    with running_server(settings, models) as server:
        yield server


@pytest.fixture
def page(browser, studio_server):
    """A fresh English page (its own storage) with the API key entered and the models listed."""
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(studio_server.url + "/")
    for panel in ("support", "ask"):  # the model list needs a key: no application panels yet
        expect(page.locator(f"nav button[data-tab={panel}]")).to_be_hidden()
    page.fill("#api-key", studio_server.key)
    page.dispatch_event("#api-key", "change")
    expect(page.locator("#chat-model option")).to_have_count(1)
    yield page
    context.close()


@needs_browser
def test_studio_chat_streams_and_draws_images(page):
    from playwright.sync_api import expect

    page.fill("#chat-input", "To be?")
    page.press("#chat-input", "Enter")
    reply = page.locator("#messages .message.assistant").first
    expect(reply.locator(".meta")).to_contain_text("finish:", timeout=60_000)
    assert len(reply.inner_text().split("finish:")[0].strip()) > 0

    page.click("nav button[data-tab=images]")
    page.fill("#image-prompt", "seven")
    page.fill("#image-n", "2")
    page.click("#draw")
    expect(page.locator("#gallery img")).to_have_count(2, timeout=60_000)


CJK_FONT_MISSING = "no CJK font: Chinese renders as empty boxes (apt-get install fonts-noto-cjk)"
GLYPHS = """() => {
  // Draw each character in the page's font; a missing glyph draws the same empty box for all of them.
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 64;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const draw = (character) => {
    context.clearRect(0, 0, 64, 64);
    context.font = `48px ${getComputedStyle(document.body).fontFamily}`;
    context.fillText(character, 4, 52);
    return context.getImageData(0, 0, 64, 64).data.join(",");
  };
  const [luo, xia, tofu] = ["落", "霞", "\\u0378"].map(draw);
  return { inked: luo.split(",").some((v) => v !== "0"), luoIsXia: luo === xia, luoIsTofu: luo === tofu };
}"""


@needs_browser
def test_chinese_renders_with_a_cjk_font(page):
    """落 and 霞 are drawn as two different glyphs, neither the empty box of an unassigned code point."""
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip()
    if not fonts:
        if REQUIRED:
            pytest.fail(CJK_FONT_MISSING, pytrace=False)
        pytest.skip(CJK_FONT_MISSING)
    drawn = page.evaluate(GLYPHS)
    assert drawn["inked"] and not drawn["luoIsXia"] and not drawn["luoIsTofu"], f"{CJK_FONT_MISSING}: {drawn}"


LEFTOVERS = """(english) => {
  // Every labelled element shows its Chinese words (none shows what English would); no text outside a
  // label or a data area (data-content: model names, messages, results) has a Latin letter; no placeholder
  // goes unlabelled; no accessible name stays English.
  const render = (template, args) => template.replace(/\\{(\\w+)\\}/g, (all, name) => name in args ? args[name] : all);
  const bad = [];
  const labelled = document.querySelectorAll("[data-i18n]");
  for (const element of labelled) {
    const args = element.dataset.i18nArgs ? JSON.parse(element.dataset.i18nArgs) : {};
    const key = element.dataset.i18n;
    if (!(key in LABELS.zh)) bad.push(`no Chinese for ${key}`);
    if (element.textContent === render(english[key], args)) bad.push(`${key}: ${element.textContent}`);
  }
  for (const element of document.querySelectorAll("[placeholder]")) {
    if (!element.dataset.i18nPlaceholder) bad.push(`unlabelled placeholder: ${element.placeholder}`);
    else if (element.placeholder === english[element.dataset.i18nPlaceholder]) bad.push(element.placeholder);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    if (element.getAttribute("aria-label") === english[element.dataset.i18nLabel]) bad.push(element.ariaLabel);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    if (!text || node.parentElement.closest("[data-i18n], [data-content], script")) continue;
    if (/[A-Za-z]/.test(text)) bad.push(`unlabelled: ${text}`);
  }
  return { bad, labels: labelled.length };
}"""


@needs_browser
def test_language_follows_the_browser_switches_every_label_and_is_remembered(browser, studio_server):
    from playwright.sync_api import expect

    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(studio_server.url + "/")
    expect(page.locator("nav button[data-tab=chat]")).to_have_text("对话")  # navigator.language is zh-CN
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    english = page.evaluate("LABELS.en")
    found = page.evaluate(LEFTOVERS, english)
    assert found["bad"] == [] and found["labels"] > 40, found

    page.select_option("#lang", "en")
    expect(page.locator("nav button[data-tab=chat]")).to_have_text("Chat")
    assert page.locator("#chat-input").get_attribute("placeholder").startswith("Say something")
    page.reload()
    expect(page.locator("nav button[data-tab=check]")).to_have_text("Check text")  # remembered over the locale
    page.select_option("#lang", "zh")
    page.reload()
    expect(page.locator("nav button[data-tab=check]")).to_have_text("文本检查")
    context.close()


ODD = ("🇨🇳😀 mail amy@example.org <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 1\"> "
       "\u200bwe will kill you. 落霞与孤鹜齐飞 " * 2)
# In the characters the tiny model's tokenizer knows, so the watermark detector can read it.
SHOWCASE = "Write to toby@sea.org or phone 13812345678. We will kill you. To be, or not to be, that is the question."


@needs_browser
def test_check_text_marks_personal_data_draws_scores_and_the_z_score(page, tmp_path: Path):
    from playwright.sync_api import expect

    page.click("nav button[data-tab=check]")
    page.fill("#check-input", ODD)
    page.click("#check-all")
    # Personal data: the exact address is marked (offsets are code points; the flag and emoji before it
    # are two UTF-16 units each), with its type beside it; markup in the text stays text.
    emails = page.locator("#check-pii mark.pii[data-type=EMAIL]")
    expect(emails).to_have_count(2, timeout=60_000)  # the first call loads the PII taggers
    assert emails.all_inner_texts() == ["amy@example.org"] * 2
    email_type = page.locator("#check-pii mark.pii[data-type=EMAIL] + .pii-type").first
    expect(email_type).to_have_text("email")
    assert "<script>window.pwned = 1</script>" in page.locator("#check-pii .marked").first.inner_text()
    # Moderation: a bar per category with its threshold; violence is over it.
    expect(page.locator("#check-moderation .bar-row")).to_have_count(9, timeout=60_000)  # loads the classifier
    violence = page.locator("#check-moderation .bar-row[data-category=violence]")
    expect(violence).to_have_class("bar-row flagged")
    assert "(threshold 0.50)" in violence.inner_text()
    assert violence.locator(".threshold").evaluate("e => e.style.left") == "50%"
    expect(page.locator("#check-moderation .verdict")).to_contain_text(re.compile(r"^Flagged: (.*, )?violence\b"))
    # The watermark detector cannot read characters its model's tokenizer never saw: said in one line.
    expect(page.locator("#check-wm .error")).to_contain_text("characters this tokenizer has never seen",
                                                                timeout=60_000)
    # The JSON behind a toggle.
    raw = page.locator("#check-moderation details.raw pre")
    expect(raw).to_be_hidden()
    page.click("#check-moderation details.raw summary")
    expect(raw).to_be_visible()
    assert '"category_thresholds"' in raw.inner_text()
    assert page.evaluate("window.pwned") is None
    expect(page.locator("#check-result script, #check-result img")).to_have_count(0)

    page.fill("#check-input", SHOWCASE)
    page.click("#check-all")
    expect(page.locator("#check-pii mark.pii")).to_have_text(["toby@sea.org", "13812345678"], timeout=30_000)
    # The watermark's z-score against its threshold (a text nobody watermarked).
    expect(page.locator("#check-wm .z-value")).to_contain_text("against the threshold 4", timeout=30_000)
    expect(page.locator("#check-wm .verdict")).to_have_text("not watermarked")
    expect(page.locator("#check-wm .z-dot")).to_have_count(1)
    screenshot(page, "studio.png", tmp_path)
    page.select_option("#lang", "zh")  # results drawn before the switch change language too
    expect(page.locator("#check-pii .pii-type")).to_have_text(["邮箱", "电话"])
    expect(page.locator("#check-moderation .verdict")).to_contain_text(re.compile(r"^已标记：(.*、)?暴力"))
    expect(page.locator("#check-wm .verdict")).to_have_text("无水印")
    found = page.evaluate(LEFTOVERS, page.evaluate("LABELS.en"))
    assert found["bad"] == [], found  # what the results say is Chinese too
    screenshot(page, "studio_zh.png", tmp_path, docs=False)


class FakeSupport:
    """A support assistant (`ChatApp`) without retrieval: two fixed FAQ entries as its sources, the
    server's guard on every answer (`turn_guard`), and a hand-off into the server's real review queue
    when the customer asks for a person."""

    kind = "support"

    def __init__(self, name: str, guard):
        self.name, self.guard = name, guard

    def reply(self, messages, conversation_id=None) -> AppReply:
        question, turn = last_user_message(messages), sum(m["role"] == "user" for m in messages)
        if "person" in question:
            reason = "the customer asked for a person"
            review_id = record_handoff(self.guard.audit, self.name, reason, messages, 0.31, self.guard.redactor)
            return AppReply(answer=f"A colleague will write to you (turn {turn}).", intent="complaint", confidence=0.31,
                            sentiment="negative", handoff=True, reason=reason, review_id=review_id)
        answer, safety, blocked = turn_guard(self.guard, question,
                                             lambda: f"Refunds reach your card within 5 working days (turn {turn}).")
        if blocked:
            return AppReply(answer=answer, safety=safety)
        refund = "How long does a refund take? <b>5 days</b>"
        sources = [Hit("faq-12", 0.8731, refund, {"intent": "refund", "lang": "en"}),
                   Hit("faq-40", 0.4102, "退款多久到账？五个工作日。", {"intent": "refund", "lang": "zh"})]
        return AppReply(answer=answer, sources=sources, intent="refund", confidence=0.92, sentiment="neutral",
                        slots={"order_id": "A-1234"}, missing_slots=["email"], safety=safety)


class FakeAsk:
    """A knowledge-answer application: one cited fact, and a warning when the question contradicts it."""

    name, kind = "atlas", "ask"

    def reply(self, messages, conversation_id=None) -> AppReply:
        contradicted = "Lyon" in last_user_message(messages)
        warnings = ["The question says the capital is Lyon; the knowledge base says Paris."] if contradicted else []
        return AppReply(answer="Paris.", citations=[Citation("(France, capital, Paris)", "geo.tsv line 3", "doc-3")],
                        warnings=warnings)


@needs_browser
def test_support_panel_shows_the_sources_the_intent_and_the_handoff(page, studio_server, tmp_path: Path):
    from playwright.sync_api import expect

    page.click("nav button[data-tab=support]")
    expect(page.locator("#support-model option")).to_have_text(["helpdesk"])
    page.fill("#support-input", "How long does a refund take?")
    page.press("#support-input", "Enter")
    reply = page.locator("#support-messages .message.assistant").last
    answer = "Refunds reach your card within 5 working days (turn 1)."
    expect(reply.locator(".answer")).to_have_text(answer, timeout=30_000)
    expect(reply.locator(".chip.intent")).to_have_text("Intent: refund (0.92)")
    expect(reply.locator(".chip.sentiment")).to_have_text("Sentiment: neutral")
    expect(reply.locator(".chip.slot")).to_have_text("order_id: A-1234")
    expect(reply.locator(".chip.missing")).to_have_text("Asked for: email")
    sources = reply.locator(".source")
    expect(sources).to_have_count(2)
    expect(sources.first.locator(".source-id")).to_have_text("faq-12 · score 0.873")
    expect(sources.first.locator(".source-text")).to_have_text("How long does a refund take? <b>5 days</b>")
    expect(sources.first.locator(".source-meta")).to_have_text("intent: refund · lang: en")
    expect(reply.locator(".handoff")).to_have_count(0)

    page.fill("#support-input", "I want to talk to a person")
    page.press("#support-input", "Enter")
    reply = page.locator("#support-messages .message.assistant").last
    # The second turn sent the whole conversation.
    expect(reply.locator(".answer")).to_have_text("A colleague will write to you (turn 2).", timeout=30_000)
    handoff = page.locator("#support-messages .message.assistant").nth(1).locator(".handoff")  # not `.last`: lazy
    expect(handoff).to_have_text(re.compile(
        r"^Handed over to a person: the customer asked for a person · review queue item #\d+$"))
    expect(handoff).to_be_visible()
    review_id = handoff.locator(".review-id").inner_text().split("#")[1]
    page.fill("#support-input", "we will kill you")
    page.press("#support-input", "Enter")
    blocked = page.locator("#support-messages .message.assistant").nth(2)
    expect(blocked.locator(".blocked")).to_have_text("The guard blocked this turn (the question).", timeout=30_000)
    screenshot(page, "studio_support.png", tmp_path, docs=False)
    page.select_option("#lang", "zh")
    expect(handoff).to_have_text(f"已转交人工：the customer asked for a person · 审核队列第 {review_id} 项")
    found = page.evaluate(LEFTOVERS, page.evaluate("LABELS.en"))
    assert found["bad"] == [], found
    page.click("#support-new")
    expect(page.locator("#support-messages .message")).to_have_count(0)
    # The hand-off waits in the review queue, where a reviewer sees it.
    _, reviewer = Store(studio_server.data_dir).create_key("reviewer", "reviewer")
    page.fill("#api-key", reviewer)
    page.dispatch_event("#api-key", "change")
    page.click("nav button[data-tab=review]")
    row = page.locator("#review-table tbody tr", has_text="talk to a person")
    expect(row.locator("td").first).to_have_text(review_id, timeout=30_000)
    expect(row.locator("td").nth(2)).to_have_text("handoff")


@needs_browser
def test_knowledge_panel_shows_citations_and_warnings(page):
    from playwright.sync_api import expect

    page.click("nav button[data-tab=ask]")
    page.fill("#ask-input", "Is Lyon the capital of France?")
    page.click("#ask-send")
    reply = page.locator("#ask-messages .message.assistant").last
    expect(reply.locator(".answer")).to_have_text("Paris.", timeout=30_000)
    expect(reply.locator(".citation")).to_have_text(["(France, capital, Paris) geo.tsv line 3 · document doc-3"])
    expect(reply.locator(".warnings li")).to_have_text(
        ["The question says the capital is Lyon; the knowledge base says Paris."])
    expect(reply.locator(".source, .handoff, .chip")).to_have_count(0)  # nothing the reply did not say
