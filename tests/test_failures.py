"""Decoded failures: every error text Z-API documents, its shapes, unknown texts, both languages."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.messages.failures import OTHER, categories, decode, translated

# Z-API's "Possible error strings", verbatim (shared/zapi-reference.md section 1.1, from
# Z-API's en/webhooks/on-message-send-examples.mdx), with the category each belongs to.
DOCUMENTED = [
    ("Did not have permission to send this message.", "permission"),
    ("Whatsapp rejected sending this message", "permission"),
    ("Whatsapp did not allow sending this message", "permission"),
    ("The message was not sent due to a likely shadow ban", "shadow-ban"),
    ("Does not have permission to send the message", "permission"),
    ("You can't message this group as you don't have permission", "permission"),
    ("This type of message can only be sent in groups", "permission"),
    ("You must accept buttons message terms in panel to send this message.", "terms"),
    ("Timeout on send message", "timeout"),
    ("Error on send message", "timeout"),
    ("Phone number does not exist", "invalid-number"),
    ("Message has not been sent because it got invalid phone number", "invalid-number"),
    ("Message not send caused by invalid media url", "media"),
    ("Got a 404 error while trying to send message", "media"),
    (
        "The url informed is not a valid url in the media format, apparently it can be an html",
        "media",
    ),
    ("Unsupported sticker format: {content-type}", "media"),
    ("Message has not been edited because it has been more than 7 days", "time-limit"),
    ("Comment message has not been sent because it has more than 7 days", "time-limit"),
    ("Product message has not been sent because provided product id was not found.", "catalog"),
    ("Catalog message has not been sent because the catalog was not found.", "catalog"),
    (
        "Product message has not been sent because provided catalog phone must not be a lid.",
        "catalog",
    ),
    ("Order has not been sent because it received invalid currency code", "order"),
    ("Update order has not been sent because it received invalid request data.", "order"),
    ("Newsletter poll vote was not sent because of missing identifier.", "event"),
    ("Event edit message was not sent because the phone is not from a group.", "event"),
    ("Event edit message was not sent because receive invalid date time.", "event"),
    ("Status reply has not been sent because the status message was not found", "not-found"),
    ("Message does not forward because it was not found", "not-found"),
    ("Message has not been sent because an error occurred in the conversion", "request"),
    ("Message has not been sent because it got invalid request params.", "request"),
    ("ModifyChat not available to channels.", "channel-unsupported"),
    ("Call not available to channels.", "channel-unsupported"),
    ("Call with audio not available to channels.", "channel-unsupported"),
    ("Document not available to channels.", "channel-unsupported"),
    ("Button Response not available to channels.", "channel-unsupported"),
    ("Ptv not available to channels.", "channel-unsupported"),
    ("Location message not available to channels.", "channel-unsupported"),
    ("Contacts not available to channels.", "channel-unsupported"),
    ("Buttons Actions not available to channels.", "channel-unsupported"),
    ("Buttons not available to channels.", "channel-unsupported"),
    ("Buttons Link not available to channels.", "channel-unsupported"),
    ("Options List not available to channels.", "channel-unsupported"),
    ("Payment not available to channels.", "channel-unsupported"),
    ("Chat Expiration not available to channels.", "channel-unsupported"),
    ("SendPinChatMessage not available to channels.", "channel-unsupported"),
    ("Pix button not available to channels.", "channel-unsupported"),
    ("It was not possible to send message to queue due to request error.", "queue"),
]
# One text of each category, to reach its texts through decode().
SAMPLE = {category: error for error, category in DOCUMENTED} | {OTHER: "Something new"}


@pytest.mark.parametrize(("error", "category"), DOCUMENTED)
def test_every_documented_text_has_its_category(error, category):
    failure = decode(error)
    assert failure is not None
    assert failure.category == category != OTHER
    assert failure.error == error


def test_every_category_but_other_has_a_documented_text():
    documented = {category for _error, category in DOCUMENTED}
    assert documented == set(categories()) - {OTHER}


@pytest.mark.parametrize(
    "variant",
    [
        "phone number does not exist",
        "PHONE NUMBER DOES NOT EXIST",
        "Phone number does not exist.",
        "  Phone   number\tdoes\nnot exist  ",
        "Phone\u00a0number does not exist .",
    ],
)
def test_case_spacing_and_a_final_period_do_not_matter(variant):
    failure = decode(variant)
    assert failure.category == "invalid-number"
    assert failure.error == variant  # shown as it came, not normalised


@pytest.mark.parametrize(
    "error",
    [
        "Unsupported sticker format: image/png",
        "Unsupported sticker format: video/mp4",
        "Unsupported sticker format: text/html; charset=utf-8",
        "unsupported sticker format: ",
        "Unsupported sticker format:",
        "UNSUPPORTED STICKER FORMAT: application/octet-stream.",
        "Unsupported sticker format: imagem/não-sei ✨",
    ],
)
def test_sticker_formats_are_media_whatever_the_content_type(error):
    assert decode(error).category == "media"


@pytest.mark.parametrize(
    "error",
    [
        "Poll not available to channels.",
        "Reaction not available to channels",
        "send-button-otp not available to channels.",
        "SOMETHING NEW NOT AVAILABLE TO CHANNELS.",
        "Mensagem de voz  not available to channels.",
    ],
)
def test_anything_not_available_to_channels_is_channel_unsupported(error):
    assert decode(error).category == "channel-unsupported"


@pytest.mark.parametrize(
    "error",
    [
        "The message was not sent due to a likely shadow ban",
        "Whatsapp rejected sending this message",
        "A text Z-API has not documented",
        "Timeout on send message",
    ],
)
def test_the_shadow_ban_code_wins_over_the_text(error):
    assert decode(error, "SHADOW_BAN").category == "shadow-ban"
    assert decode(error, " shadow_ban ").category == "shadow-ban"


def test_the_shadow_ban_text_alone_is_a_shadow_ban():
    assert decode("The message was not sent due to a likely shadow ban", None).category == (
        "shadow-ban"
    )


def test_another_code_leaves_the_text_to_decide():
    assert decode("Phone number does not exist", "SOMETHING_ELSE").category == "invalid-number"
    assert decode("Phone number does not exist", "").category == "invalid-number"


@pytest.mark.parametrize(
    "error",
    [
        "Something went wrong",
        "Erro desconhecido ao enviar a mensagem",
        "   ",
        "Phone number does not exist anymore",
        "not available to channels",
        "Message not sent caused by invalid media url",
    ],
)
def test_an_unknown_text_is_other_and_kept_as_it_came(error):
    failure = decode(error)
    assert failure.category == OTHER
    assert failure.error == error


@pytest.mark.parametrize("error_code", [None, "", "SHADOW_BAN"])
@pytest.mark.parametrize("error", [None, ""])
def test_no_error_is_no_failure(error, error_code):
    assert decode(error, error_code) is None


@given(error=st.text(), error_code=st.one_of(st.none(), st.text()))
@settings(max_examples=500)
def test_any_text_decodes_to_a_known_category(error, error_code):
    failure = decode(error, error_code)
    if error == "":
        assert failure is None
    else:
        assert failure.category in categories()
        assert failure.error == error


def test_huge_and_odd_texts_decode():
    for error in (
        "x" * 5_000_000,
        " " * 1_000_000 + "Phone number does not exist" + "." * 1_000_000,
        "\ud800 lone surrogate",
        "\x00\x01\x7f",
        "ǅ ß ﬁ İ Σ",
        "Call" + " not available to channels" * 10_000,
    ):
        assert decode(error).category in categories()
    assert decode(" " * 1_000_000 + "Phone number does not exist").category == "invalid-number"


def test_categories_come_in_a_stable_order_with_other_last():
    order = categories()
    assert order == categories()
    assert len(set(order)) == len(order)
    assert order[0] == "shadow-ban"
    assert order[-1] == OTHER


def texts_in(app, accept_language: str) -> dict:
    with app.test_request_context(headers={"Accept-Language": accept_language}):
        return {category: translated(category) for category in categories()}


def test_every_category_reads_in_english_and_in_portuguese(app):
    english = texts_in(app, "en")
    portuguese = texts_in(app, "pt-BR")
    for category in categories():
        failure = decode(SAMPLE[category])
        assert english[category] == (failure.label, failure.explanation, failure.advice)
        for in_english, in_portuguese in zip(english[category], portuguese[category], strict=True):
            assert in_english.strip() and in_portuguese.strip()
            assert in_portuguese != in_english, f"{category}: {in_english!r} has no Portuguese"
    labels = [texts.label for texts in portuguese.values()]
    assert len(set(labels)) == len(labels)


def test_the_shadow_ban_texts_say_it_is_a_guess(app):
    english = texts_in(app, "en")["shadow-ban"]
    assert "guess" in english.explanation
    assert "bulk" in english.advice and "Z-API's tips" in english.advice
    portuguese = texts_in(app, "pt-BR")["shadow-ban"]
    assert "suposição" in portuguese.explanation
