"""Masking of personal data wherever the product shows rows (reports, quarantine exports, logs): every
personal field, and anything e-mail- or phone-like in the other values. Opaque ids are not personal data
and are never masked (a data owner looks rows up by them)."""

from __future__ import annotations

import re

# Fields holding personal data, by name part: names, contact points, addresses.
_PII_KEYS = ("name", "email", "phone", "mobile", "fax", "street", "title", "salutation", "city", "postal",
             "postcode", "zip", "website", "address", "birth")
# Anything that looks like an e-mail or a phone number, valid or not, wherever it stands.
_EMAIL_LIKE = re.compile(r"[^\s'\"<>(),;:]*@[^\s'\"<>(),;:]*")
_PHONE_LIKE = re.compile(r"(?<![\d:T.])\+?\d[\d\s().\-/]{5,}\d")  # not inside a time or a decimal
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"\d+\.\d+")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def mask_id(legacy_id: object) -> object:
    """Legacy ids are opaque, not personal data: shown in clear, so a data owner can look the row up. A CRM
    keyed on e-mail addresses is the exception: such an id is masked like an e-mail."""
    if isinstance(legacy_id, str) and "@" in legacy_id:
        return mask_value("email", legacy_id)
    return legacy_id


def _mask_phone(m: re.Match) -> str:
    text = m.group(0)
    digits = sum(c.isdigit() for c in text)
    if digits < 7 or _ISO_MOMENT.match(text) or _DECIMAL.fullmatch(text):  # a date, an amount, a short number
        return text
    return re.sub(r"\d", "*", text[:-2]) + text[-2:]


def scrub(text: str) -> str:
    """Mask e-mail-like and phone-like runs in free text (a quarantine detail quotes the bad value); ids
    shaped as UUIDs are opaque and stay as they are."""
    parts = _UUID.split(text)
    ids = _UUID.findall(text)
    out = []
    for i, part in enumerate(parts):
        part = _EMAIL_LIKE.sub(lambda m: f"{m.group(0)[:1]}***@***" if m.group(0) != "@" else m.group(0), part)
        out.append(_PHONE_LIKE.sub(_mask_phone, part))
        if i < len(ids):
            out.append(ids[i])
    return "".join(out)


def mask_value(key: str, value: object) -> object:
    """Mask personal data for samples shown in reports: every personal field, and any e-mail- or
    phone-like text in the others."""
    if not isinstance(value, str) or not value:
        return value
    if not any(k in key.lower() for k in _PII_KEYS):
        return scrub(value)
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain[:1]}***"
    if "phone" in key or "mobile" in key or "fax" in key:
        return "*" * max(0, len(value) - 2) + value[-2:]
    return value[:1] + "***"
