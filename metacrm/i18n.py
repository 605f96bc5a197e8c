"""The languages metacrm speaks: Accept-Language negotiation and the built-in message catalogue."""

from __future__ import annotations

from typing import Literal

#: The languages metacrm speaks; every other requested language falls back to one of these.
Language = Literal["en", "zh-CN"]
LANGUAGES: tuple[Language, ...] = ("en", "zh-CN")

#: Language tags (lower-cased) that mean a supported language. Traditional Chinese
#: (zh-Hant, zh-TW, zh-HK) is not simplified Chinese, so it is not listed.
_TAGS: dict[str, Language] = {
    "en": "en",
    "zh": "zh-CN",
    "zh-cn": "zh-CN",
    "zh-hans": "zh-CN",
    "zh-hans-cn": "zh-CN",
    "zh-sg": "zh-CN",
    "zh-hans-sg": "zh-CN",
}
#: Longest header looked at, and most language ranges read from it.
_MAX_HEADER = 500
_MAX_RANGES = 20


def supported(tag: str | None) -> Language | None:
    """The supported language a single tag means (`zh-Hans` -> zh-CN, `en-GB` -> en), or None."""
    if not tag:
        return None
    tag = tag.strip().lower()
    if tag in _TAGS:
        return _TAGS[tag]
    if tag.startswith("en-"):
        return "en"
    return None


def negotiate(header: str | None) -> Language | None:
    """The best supported language of an Accept-Language header (q-values honoured), or None
    when it names none of them (the caller then falls back to the tenant's default)."""
    best: tuple[float, int, Language] | None = None
    for index, part in enumerate((header or "")[:_MAX_HEADER].split(",")[:_MAX_RANGES]):
        tag, _, params = part.partition(";")
        quality = _quality(params)
        language = supported(tag)
        if language is None or quality <= 0:
            continue
        if best is None or (-quality, index) < (-best[0], best[1]):
            best = (quality, index, language)
    return best[2] if best else None


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                return 0.0
            return quality if 0 <= quality <= 1 else 0.0
    return 1.0


# ---------------------------------------------------------------- the catalogue

#: Problem titles by problem code (the English title is the error class's own).
_TITLES: dict[str, str] = {
    "internal": "内部错误",
    "bad-request": "请求有误",
    "unauthenticated": "需要登录",
    "permission-denied": "权限不足",
    "not-found": "未找到",
    "conflict": "冲突",
    "stale-version": "记录在读取后已被修改",
    "payload-too-large": "请求体过大",
    "unsupported-media-type": "不支持的媒体类型",
    "record-invalid": "记录无效",
    "query-invalid": "查询无效",
    "metadata-invalid": "元数据无效",
    "request-invalid": "请求无效",
    "destructive-change": "此变更会销毁数据",
    "formula-invalid": "表达式无效",
    "schema-busy": "数据表正忙，请重试",
    "database-busy": "数据库正忙，请重试",
    "too-many-requests": "请求过多",
    "method-not-allowed": "不允许的请求方法",
    "pack-invalid": "元数据包无效",
}

#: Problem details by problem code, for the codes whose English detail is a sentence
#: about the request rather than data the caller needs to read as is.
_DETAILS: dict[str, str] = {
    "internal": "发生了意外错误，已记录",
    "unauthenticated": "请登录，或发送有效的令牌（Authorization: Bearer ...）",
    "permission-denied": "你无权执行此操作",
    "not-found": "未找到请求的资源",
    "stale-version": "记录已被他人修改；请重新读取后再试",
    "record-invalid": "记录无效；问题列在 errors 中",
    "query-invalid": "查询无效；问题列在 errors 中",
    "request-invalid": "部分参数无效；问题列在 errors 中",
    "too-many-requests": "请求过多，请稍后再试",
    "method-not-allowed": "此路径不接受该请求方法",
}

#: Field-error messages by error code; `{field}` is the field (or path) the error names.
_MESSAGES: dict[str, str] = {
    "required": "{field} 为必填项",
    "missing": "{field} 为必填项",
    "unknown-field": "{field} 不是可用的字段",
    "read-only": "{field} 为只读，不能写入",
    "type": "{field} 的值类型或格式不正确",
    "lookup-target": "{field} 引用的记录不存在或你无权查看",
    "unique": "{field} 的值已被另一条记录使用",
    "permission-denied": "你无权修改 {field}",
    "not-found": "未找到 {field}",
    "stale-version": "记录已被他人修改；请重新读取后再试",
    "record-locked": "记录在审批中已锁定，不能修改 {field}",
    "illegal-move": "不允许从当前阶段移到该阶段",
    "required-for-stage": "进入该阶段前必须填写 {field}",
    "unknown-role": "{field} 指定的角色不存在",
    "unknown-permission": "{field} 不是已知的平台权限",
    "min": "{field} 小于允许的最小值",
    "max": "{field} 大于允许的最大值",
    "max-length": "{field} 超出了允许的最大长度",
    "precision": "{field} 的整数位数过多",
    "picklist-value": "{field} 不是可选的值",
    "email": "{field} 不是有效的邮箱地址",
    "phone": "{field} 不是有效的电话号码",
    "url": "{field} 不是有效的 http(s) 网址",
    "duplicate-value": "{field} 中有重复的值",
}


def title(code: str, language: Language, english: str) -> str:
    """A problem's title in `language` (the English title when there is no translation)."""
    return _TITLES.get(code, english) if language == "zh-CN" else english


def detail(code: str, language: Language, english: str) -> str:
    """A problem's detail in `language` (the English detail when there is no translation)."""
    return _DETAILS.get(code, english) if language == "zh-CN" else english


def message(code: str, field: str, language: Language, english: str) -> str:
    """A field error's message in `language` (the English message when there is none)."""
    if language != "zh-CN" or code not in _MESSAGES:
        return english
    return _MESSAGES[code].format(field=field or "该值")
