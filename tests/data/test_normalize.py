"""Normalisers of duplicate matching: messy company names, phones, e-mails, pinyin names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metacrm.runtime.data.normalize import (
    block_keys,
    normalize,
    normalize_company,
    normalize_email,
    normalize_person,
    normalize_phone,
    similarity,
)


@pytest.mark.parametrize(
    ("messy", "clean"),
    [
        ("北京字节跳动科技有限公司", "北京字节跳动科技"),
        ("北京字节跳动科技", "北京字节跳动科技"),
        ("（北京）字节跳动科技有限公司 ", "北京字节跳动科技"),
        ("北京字节跳动科技有限责任公司", "北京字节跳动科技"),
        ("字节跳动（中国）有限公司", "字节跳动"),
        ("阿里巴巴集团", "阿里巴巴"),
        ("华为技术股份有限公司", "华为技术"),
        ("ACME Co., Ltd.", "acme"),
        ("acme co ltd", "acme"),
        ("ＡＣＭＥ　Ｃｏ．，Ｌｔｄ．", "acme"),
        ("Acme Corporation", "acme"),
        ("Acme, Inc.", "acme"),
        ("Siemens GmbH", "siemens"),
        ("Acme LLC", "acme"),
        ("Limited", "limited"),  # a name that is only a legal word stays itself
        ("有限公司", "有限"),  # never stripped to nothing
        ("  ", None),
    ],
)
def test_company_names(messy: str, clean: str | None) -> None:
    assert normalize_company(messy) == clean


def test_different_companies_stay_apart() -> None:
    assert normalize_company("北京字节跳动科技") != normalize_company("上海字节跳动科技")
    assert similarity("company", "acme", "acne") < 0.9


@pytest.mark.parametrize(
    ("messy", "clean"),
    [
        ("+86 138-0013-8000", "13800138000"),
        ("13800138000", "13800138000"),
        ("0086 13800138000", "13800138000"),
        ("86 138 0013 8000", "13800138000"),
        ("１３８００１３８０００", "13800138000"),
        ("010-1234 5678", "1012345678"),
        ("+86 (10) 1234-5678", "1012345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("001 415 555 0100", "+14155550100"),
        ("n/a", None),
    ],
)
def test_phones(messy: str, clean: str | None) -> None:
    assert normalize_phone(messy) == clean


def test_emails() -> None:
    assert normalize_email("  Li.Lei@Example.COM ") == "li.lei@example.com"
    assert normalize_email("ＬＩ@example.com") == "li@example.com"


@pytest.mark.parametrize(
    "name", ["张伟", "Zhang Wei", "zhang wei", "Wei ZHANG", "张 伟", "ZHANG, Wei"]
)
def test_person_names_by_pinyin_in_any_order(name: str) -> None:
    assert normalize_person(name) == "wei zhang"


def test_person_names_similar_and_apart() -> None:
    assert (
        similarity("person_name", normalize_person("Zhang Wei"), normalize_person("Zhang Wie"))
        >= 0.8
    )
    assert similarity("person_name", normalize_person("张伟"), normalize_person("李娜")) < 0.5
    assert normalize_person("吕布") == normalize_person("Lü Bu")


def test_keys_of_near_values_meet() -> None:
    one = set(block_keys("company", normalize_company("北京字节跳动科技有限公司") or ""))
    typo = set(block_keys("company", normalize_company("北京字节跳到科技有限公司") or ""))
    assert one & typo
    a = set(block_keys("person_name", "wei zhang"))
    b = set(block_keys("person_name", "wie zhang"))
    assert a & b


METHODS = ["exact", "fuzzy", "company", "phone", "email", "person_name"]
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["ACME Co., Ltd.", "（北京）字节跳动科技有限公司", "+86 138-0013-8000", "张伟"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(METHODS), value=_TEXT)
def test_normalising_twice_changes_nothing(method: str, value: str) -> None:
    once = normalize(method, value)
    if once is not None:
        assert normalize(method, once) == once


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(METHODS), value=_TEXT)
def test_an_exact_copy_always_matches(method: str, value: str) -> None:
    norm = normalize(method, value)
    if norm is not None:
        assert normalize(method, str(value)) == norm
        assert similarity(method, norm, norm) == 1.0
        assert block_keys(method, norm)
