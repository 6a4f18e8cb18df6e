"""feedback_db.scrub: each kind caught in chat sentences, Luhn failures and ordinary texts left alone."""

from __future__ import annotations

import pytest

from bench.scrub import measure
from bench.scrub_samples import ORDINARY, ordinary_texts, planted_texts
from feedback_db.scrub import KINDS, Scrubbed, scrub

CAUGHT = [
    ("Mail me at Jane.Doe+chat@Example.co.uk.", "Mail me at <EMAIL>.", "EMAIL"),
    ("my work address is j_smith99@uni-bonn.de, thanks", "my work address is <EMAIL>, thanks", "EMAIL"),
    ("Call +1 (555) 123-4567 tomorrow", "Call <PHONE> tomorrow", "PHONE"),
    ("my cell is 555-123-4567.", "my cell is <PHONE>.", "PHONE"),
    ("office: (415) 555-0132", "office: <PHONE>", "PHONE"),
    ("Ruf an: +49 30 12345678!", "Ruf an: <PHONE>!", "PHONE"),
    ("in Paris, 06 12 34 56 78", "in Paris, <PHONE>", "PHONE"),
    ("London 020 7946 0958 or +44 7700 900123", "London <PHONE> or <PHONE>", "PHONE"),
    ("Contact:+33612345678", "Contact:<PHONE>", "PHONE"),
    ("the request came from 203.0.113.7 at noon", "the request came from <IP_ADDRESS> at noon", "IP_ADDRESS"),
    ("ssh to 192.168.1.20:22 fails", "ssh to <IP_ADDRESS>:22 fails", "IP_ADDRESS"),
    ("my IPv6 is 2001:db8:85a3::8a2e:370:7334.", "my IPv6 is <IP_ADDRESS>.", "IP_ADDRESS"),
    ("card 4111 1111 1111 1111 was declined", "card <CARD_NUMBER> was declined", "CARD_NUMBER"),
    ("amex 3782-822463-10005 exp 04/28", "amex <CARD_NUMBER> exp 04/28", "CARD_NUMBER"),
    ("number 5555555555554444?", "number <CARD_NUMBER>?", "CARD_NUMBER"),
    ("key: sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz12345", "key: <SECRET>", "SECRET"),
    ("token hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345678 works", "token <SECRET> works", "SECRET"),
    ("ghp_" + "a1B2" * 9 + " and github_pat_" + "X" * 22 + "_" + "y9" * 20, "<SECRET> and <SECRET>", "SECRET"),
    ("aws AKIAIOSFODNN7EXAMPLE / ASIAY34FZKBOKMUTVV7A", "aws <SECRET> / <SECRET>", "SECRET"),
]


@pytest.mark.parametrize(("text", "expected", "kind"), CAUGHT)
def test_each_kind_is_replaced_by_its_placeholder(text: str, expected: str, kind: str) -> None:
    result = scrub(text)
    assert result.text == expected
    assert set(result.found) == {kind}
    assert result.found[kind] == expected.count(f"<{kind}>")
    assert result.changed


def test_a_pem_block_becomes_one_secret() -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow 555-123-4567 IBAAKCAQEA\n203.0.113.7==\n-----END RSA PRIVATE KEY-----"
    )
    result = scrub(f"why does this fail?\n{key}\nthanks")
    assert result == Scrubbed("why does this fail?\n<SECRET>\nthanks", {"SECRET": 1})


def test_several_kinds_in_one_text_are_counted() -> None:
    result = scrub("I'm ann@example.com, +44 20 7946 0958, from 198.51.100.4; card 4242-4242-4242-4242.")
    assert result.text == "I'm <EMAIL>, <PHONE>, from <IP_ADDRESS>; card <CARD_NUMBER>."
    assert dict(result.found) == {"EMAIL": 1, "PHONE": 1, "IP_ADDRESS": 1, "CARD_NUMBER": 1}
    assert tuple(result.found) == tuple(kind for kind in KINDS if kind in result.found)


@pytest.mark.parametrize(
    "text",
    ["card 4111 1111 1111 1112", "4242-4242-4242-4241", "3782 822463 10006", "4111111111111112", "5555555555554440"],
)
def test_digit_runs_failing_luhn_are_left_alone(text: str) -> None:
    assert scrub(text) == Scrubbed(text, {})


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_unchanged(text: str) -> None:
    result = scrub(text)
    assert result.text == text
    assert not result.changed


def test_a_version_keeps_its_dotted_quad_and_an_address_does_not() -> None:
    assert scrub("version 1.2.3.4").text == "version 1.2.3.4"
    assert scrub("from 1.2.3.4").text == "from <IP_ADDRESS>"


def test_the_bench_samples_are_all_caught_and_no_ordinary_text_changes() -> None:
    result = measure(planted_texts(150), ordinary_texts())
    assert {kind: dict(count) for kind, count in result["counts"].items() if count["missed"]} == {}
    assert result["overreach"] == []
    assert result["false_positives"] == []
