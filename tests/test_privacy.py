"""Masking of personal data: what each helper keeps, and short or empty input."""

from __future__ import annotations

import pytest

from linli.privacy import mask_id_number, mask_name, mask_phone, mask_plate


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        (" 13812345678 ", "138****5678"),
        ("+8613812345678", "+86*******5678"),
        ("055162345678", "055*****5678"),
        ("12345", "***45"),
        ("1234", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("王建国", "王**"),
        ("李伟", "李*"),
        ("欧阳娜娜", "欧***"),
        ("司马相如子", "司***"),
        ("王", "*"),
        ("John Smith", "J***"),
        ("al", "A***"),
        ("007", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_name(name: str | None, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_name_does_not_reveal_the_length_of_latin_names() -> None:
    assert mask_name("Jo") == mask_name("Jonathan Alexander Smith")


@pytest.mark.parametrize(
    ("id_number", "masked"),
    [
        ("340104199001011234", "340*************34"),
        ("34010419900101123X", "340*************3X"),
        ("340104900101123", "340**********23"),
        ("E12345678", "E*******8"),
        ("1234", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_id_number(id_number: str | None, masked: str) -> None:
    assert mask_id_number(id_number) == masked


def test_mask_id_number_always_hides_the_birth_date() -> None:
    masked = mask_id_number("340104199001011234")
    assert len(masked) == 18
    assert "19900101" not in masked
    assert set(masked[6:14]) == {"*"}


@pytest.mark.parametrize(
    ("plate", "masked"),
    [
        ("皖A12345", "皖A***45"),
        ("皖A·12345", "皖A***45"),
        ("皖AD12345", "皖A****45"),
        ("皖A1", "皖**"),
        ("A", "*"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_plate(plate: str | None, masked: str) -> None:
    assert mask_plate(plate) == masked
