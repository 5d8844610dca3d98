"""ISRC and ISWC with their real formats and check digits (ISO 3901, ISO 15707); exact money."""

import pytest

from ledger.identifiers import IdentifierError, format_isrc, iswc_check_digit, normalize_isrc, normalize_iswc
from webapp.money import parse_usd, usd


@pytest.mark.parametrize("text", ["T-034.524.680-1", "T0345246801", "t-034524680-1", " T 034.524.680 1 "])
def test_iswc_spellings_share_one_normal_form(text):
    assert normalize_iswc(text) == "T-034.524.680-1"


def test_iswc_check_digit_follows_the_weighted_sum():
    assert iswc_check_digit("034524680") == 1
    assert iswc_check_digit("123456789") == 4
    assert normalize_iswc("T1234567894") == "T-123.456.789-4"


def test_iswc_with_a_wrong_check_digit_is_refused_saying_so():
    with pytest.raises(IdentifierError, match="wrong check digit: 2, expected 1"):
        normalize_iswc("T-034.524.680-2")


@pytest.mark.parametrize("text", ["", "T034524680", "X0345246801", "T-034.524.680-12", "T03452468A1"])
def test_malformed_iswc_is_refused(text):
    with pytest.raises(IdentifierError, match="not an ISWC"):
        normalize_iswc(text)


@pytest.mark.parametrize("text", ["USSKG1912345", "us-skg-19-12345", "ISRC US-SKG-19-12345", "USRMS8371421"])
def test_isrc_is_stored_compact_and_upper_case(text):
    assert normalize_isrc(text) in ("USSKG1912345", "USRMS8371421")


@pytest.mark.parametrize("text", ["USSKG191234", "U1SKG1912345", "USSKG19123456", "USSKGAB12345", "U$SKG1912345"])
def test_malformed_isrc_is_refused(text):
    with pytest.raises(IdentifierError, match="not an ISRC"):
        normalize_isrc(text)


def test_isrc_is_displayed_with_hyphens():
    assert format_isrc("USSKG1912345") == "US-SKG-19-12345"


@pytest.mark.parametrize(
    "units, text",
    [
        (0, "$0.00"),
        (1_000_000, "$1.00"),
        (1_230_000, "$1.23"),
        (1_234_567, "$1.234567"),
        (1_000, "$0.001"),
        (123_456_789_000_000, "$123,456,789.00"),
        (-50_000, "-$0.05"),
    ],
)
def test_money_reads_as_dollars_and_cents_exactly(units, text):
    assert usd(units) == text


def test_money_is_exact_beyond_float_precision():
    units = 10**20 + 1
    assert usd(units) == "$100,000,000,000,000.000001"


@pytest.mark.parametrize("text, units", [("12.5", 12_500_000), ("$0.000001", 1), ("1,000", 1_000_000_000), ("0", 0)])
def test_dollar_amounts_parse_to_units(text, units):
    assert parse_usd(text) == units


@pytest.mark.parametrize("text", ["1.0000001", "-1", "1e3", "abc", "", "0.1.2"])
def test_bad_dollar_amounts_are_refused(text):
    with pytest.raises(ValueError):
        parse_usd(text)
